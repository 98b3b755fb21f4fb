"""Bad input over Wyoming: each bad connection gets an error (or is closed) and the
server keeps answering others. Usage: wyoming_bad.py PORT (server read timeout ≤ 5 s)."""
import asyncio
import json
import sys

from wyoming.event import async_read_event
from wyoming.info import Describe, Info
from wyoming.client import AsyncTcpClient

HOST = "127.0.0.1"


async def still_serving(port):
    async with AsyncTcpClient(HOST, port, read_timeout=30) as c:
        await c.write_event(Describe().event())
        ev = await c.read_event()
    assert ev is not None and Info.is_type(ev.type), ev


async def exchange(port, raw, then_eof=False):
    """Sends raw bytes, returns the events read until the server closes."""
    r, w = await asyncio.open_connection(HOST, port)
    w.write(raw)
    await w.drain()
    if then_eof:
        w.write_eof()
    events = []
    while True:
        ev = await asyncio.wait_for(async_read_event(r), timeout=30)
        if ev is None:
            break
        events.append(ev)
    w.close()
    return events


def header(obj):
    return (json.dumps(obj) + "\n").encode()


def expect_error(events, needle):
    assert [e.type for e in events] == ["error"], events
    assert needle in events[0].data["text"], events[0].data


async def main(port):
    await still_serving(port)

    # Malformed JSON header.
    expect_error(await exchange(port, b"{this is not json\n"), "malformed event header")
    await still_serving(port)

    # Unknown event types are ignored; the connection keeps working.
    evs = await exchange(port, header({"type": "frobnicate", "data": {"x": 1}}) + header({"type": "describe"}), then_eof=True)
    assert [e.type for e in evs] == ["info"], evs

    # A payload length that lies: announces 100000 bytes, sends 10, then stalls.
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    evs = await exchange(port, header({"type": "audio-chunk", "data": fmt, "payload_length": 100000}) + b"0123456789")
    expect_error(evs, "not all sent")
    # …or sends 10 and hangs up.
    assert await exchange(port, header({"type": "audio-chunk", "data": fmt, "payload_length": 100000}) + b"0123456789", then_eof=True) == []
    # …or announces more than the limit.
    expect_error(await exchange(port, header({"type": "audio-chunk", "data": fmt, "payload_length": 10**9})), "over the")
    await still_serving(port)

    # Unsupported audio rate: a clear error.
    evs = await exchange(port, header({"type": "audio-start", "data": {"rate": 1000, "width": 2, "channels": 1}}))
    expect_error(evs, "unsupported audio rate 1000")

    # A 100 MB header line: refused long before the end, others still served.
    r, w = await asyncio.open_connection(HOST, port)
    block = b"x" * (1 << 20)
    sent, refused = 0, False
    try:
        for _ in range(100):
            w.write(block)
            await w.drain()
            sent += len(block)
    except (ConnectionResetError, BrokenPipeError):
        refused = True
    # The server stopped reading after its 64 KiB line limit and closed the connection,
    # so the client could not push 100 MB into it.
    assert refused and sent < 100 * len(block), sent
    w.close()
    await still_serving(port)
    print("wyoming bad input: ok")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
