"""Home Assistant's Wyoming client (the `wyoming` package) against `hearth serve`.

Usage: wyoming_client.py PORT JFK_WAV. Exits non-zero (AssertionError) on any mismatch.
"""
import array
import asyncio
import sys
import wave

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.intent import Intent, NotRecognized, Recognize

HOST = "127.0.0.1"
JFK = "ask not what your country can do for you"


async def describe(port):
    async with AsyncTcpClient(HOST, port, read_timeout=30) as c:
        await c.write_event(Describe().event())
        ev = await c.read_event()
    assert ev is not None and Info.is_type(ev.type), ev
    return Info.from_event(ev)


async def transcribe(port, pcm, rate, width, channels):
    async with AsyncTcpClient(HOST, port, read_timeout=120) as c:
        await c.write_event(Transcribe(language="en").event())
        await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = 1024 * width * channels  # 1024 frames per chunk, as satellites send
        for i in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[i : i + step])
            await c.write_event(chunk.event())
        await c.write_event(AudioStop().event())
        ev = await c.read_event()
    assert ev is not None and Transcript.is_type(ev.type), ev
    return Transcript.from_event(ev).text


async def ask(port, event):
    async with AsyncTcpClient(HOST, port, read_timeout=30) as c:
        await c.write_event(event)
        return await c.read_event()


async def main(port, wav_path):
    info = await describe(port)
    assert [m.languages for p in info.asr for m in p.models] == [["en"]], info.asr
    assert info.asr[0].attribution.url.startswith("https://"), info.asr
    assert info.asr[0].installed
    assert [m.languages for p in info.intent for m in p.models] == [["en"]], info.intent
    assert [p.name for p in info.handle] == ["hearth-handle"], info.handle

    with wave.open(wav_path, "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        pcm = w.readframes(w.getnframes())
    assert (rate, width, channels) == (16000, 2, 1), (rate, width, channels)

    # The file as it is, and as 48 kHz stereo (each sample repeated 3× on both channels):
    # the server must resample and down-mix to the same words.
    samples = array.array("h", pcm)
    stereo48 = array.array("h", (s for s in samples for _ in range(6)))
    texts = await asyncio.gather(
        transcribe(port, pcm, 16000, 2, 1),
        transcribe(port, stereo48.tobytes(), 48000, 2, 2),
    )
    for t in texts:
        assert JFK in t.lower(), texts

    # Several clients at once: recognize, not-recognized and the handle path together.
    kitchen, overhead, nonsense, handled, unhandled = await asyncio.gather(
        ask(port, Recognize(text="turn on the kitchen lights").event()),
        ask(port, Recognize(text="turn on the overhead light").event()),
        ask(port, Recognize(text="make me a sandwich with pickles").event()),
        ask(port, Transcript(text="turn on the kitchen lights").event()),
        ask(port, Transcript(text="make me a sandwich with pickles").event()),
    )
    assert Intent.is_type(kitchen.type), kitchen
    k = Intent.from_event(kitchen)
    assert k.name == "HassTurnOn", k
    assert {e.name: e.value for e in k.entities} == {"area": "Kitchen", "domain": "light"}, k
    o = Intent.from_event(overhead)
    assert (o.name, {e.name: e.value for e in o.entities}) == ("HassTurnOn", {"name": "Overhead Light"}), o
    assert NotRecognized.is_type(nonsense.type), nonsense
    assert Handled.is_type(handled.type), handled
    assert Handled.from_event(handled).text == "Turned on the lights", handled
    assert NotHandled.is_type(unhandled.type), unhandled
    print("wyoming client: ok:", texts[0])


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
