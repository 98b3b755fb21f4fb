"""Home Assistant's Wyoming client (the `wyoming` package) against `hearth serve`.

Usage: wyoming_client.py PORT JFK_WAV COMMAND_WAV, COMMAND_WAV saying "turn on the kitchen
light". Exits non-zero (AssertionError) on any mismatch. The actions the handle path runs
are checked by the caller (the test home's shell sink writes them to a file).
"""
import array
import asyncio
import sys
import wave

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.intent import Intent, NotRecognized, Recognize
from wyoming.pipeline import PipelineStage, RunPipeline

HOST = "127.0.0.1"
JFK = "ask not what your country can do for you"


async def describe(port):
    async with AsyncTcpClient(HOST, port, read_timeout=30) as c:
        await c.write_event(Describe().event())
        ev = await c.read_event()
    assert ev is not None and Info.is_type(ev.type), ev
    return Info.from_event(ev)


def read_wav(path):
    with wave.open(path, "rb") as w:
        return w.getframerate(), w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())


async def send_audio(c, pcm, rate, width, channels, pace=0.0):
    await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = 1024 * width * channels  # 1024 frames per chunk, as satellites send
    for i in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[i : i + step])
        await c.write_event(chunk.event())
        if pace:
            await asyncio.sleep(pace)
    await c.write_event(AudioStop().event())


async def read_until(c, last):
    """Events up to and including the first of type `last`."""
    events = []
    while True:
        ev = await c.read_event()
        assert ev is not None, ("connection closed", events)
        events.append(ev)
        if ev.type == last:
            return events


async def transcribe(port, pcm, rate, width, channels, pace=0.0):
    """As Home Assistant asks: `transcribe` first, so the transcript comes streamed:
    transcript-start, transcript-chunk…, transcript, transcript-stop. Returns (text, chunks)."""
    async with AsyncTcpClient(HOST, port, read_timeout=300) as c:
        await c.write_event(Transcribe(language="en").event())
        await send_audio(c, pcm, rate, width, channels, pace)
        events = await read_until(c, "transcript-stop")
    kinds = [e.type for e in events]
    assert TranscriptStart.is_type(kinds[0]), kinds
    assert all(TranscriptChunk.is_type(k) for k in kinds[1:-2]) and len(kinds) >= 4, kinds
    assert Transcript.is_type(kinds[-2]) and TranscriptStop.is_type(kinds[-1]), kinds
    chunks = [TranscriptChunk.from_event(e).text for e in events[1:-2]]
    return Transcript.from_event(events[-2]).text, chunks


async def transcribe_bare(port, rate, width, channels, pcm):
    """Audio without a `transcribe` request: just the final transcript."""
    async with AsyncTcpClient(HOST, port, read_timeout=300) as c:
        await send_audio(c, pcm, rate, width, channels)
        ev = await c.read_event()
    assert ev is not None and Transcript.is_type(ev.type), ev
    return Transcript.from_event(ev).text


async def spoken_command(port, wav):
    """A satellite's pipeline from speech to the handled reply (run-pipeline asr → handle)."""
    rate, width, channels, pcm = read_wav(wav)
    async with AsyncTcpClient(HOST, port, read_timeout=300) as c:
        await c.write_event(RunPipeline(start_stage=PipelineStage.ASR, end_stage=PipelineStage.HANDLE).event())
        await send_audio(c, pcm, rate, width, channels)
        events = [await c.read_event(), await c.read_event()]
    assert Transcript.is_type(events[0].type), events
    return Transcript.from_event(events[0]).text, events[1]


def words(text):
    return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


async def ask(port, event):
    async with AsyncTcpClient(HOST, port, read_timeout=30) as c:
        await c.write_event(event)
        return await c.read_event()


async def main(port, wav_path, command_wav):
    info = await describe(port)
    assert [m.languages for p in info.asr for m in p.models] == [["en"]], info.asr
    assert info.asr[0].attribution.url.startswith("https://"), info.asr
    assert info.asr[0].installed
    assert info.asr[0].supports_transcript_streaming, info.asr
    assert info.handle[0].supports_home_control, info.handle
    assert [m.languages for p in info.intent for m in p.models] == [["en"]], info.intent
    assert [p.name for p in info.handle] == ["hearth-handle"], info.handle

    rate, width, channels, pcm = read_wav(wav_path)
    assert (rate, width, channels) == (16000, 2, 1), (rate, width, channels)

    # The file as it is, and as 48 kHz stereo (each sample repeated 3× on both channels):
    # the server must resample and down-mix to the same words.
    samples = array.array("h", pcm)
    stereo48 = array.array("h", (s for s in samples for _ in range(6)))
    # Sent at once, the streamed transcript is one chunk: the whole text.
    (text, chunks), (text48, chunks48), bare = await asyncio.gather(
        transcribe(port, pcm, 16000, 2, 1),
        transcribe(port, stereo48.tobytes(), 48000, 2, 2),
        transcribe_bare(port, *read_wav(command_wav)),
    )
    texts = [text, text48]
    for t in texts:
        assert JFK in t.lower(), texts
    assert words(bare) == words("turn on the kitchen light"), bare
    assert chunks == [text] and chunks48 == [text48], (chunks, chunks48)

    # Sent live (in real time, the first 6 s), the server decodes the audio so far while it
    # arrives and streams the words two successive decodes agree on. How many chunks that
    # makes depends on the machine's speed, and a partial decode may hear a word
    # differently from the final one (the final transcript is authoritative; the
    # agreement rule is unit-tested in serve::wyoming), so here: the stream's shape (in
    # `transcribe`) and that it carries words.
    live_text, live_chunks = await transcribe(port, pcm[: 6 * 16000 * 2], 16000, 2, 1, pace=1024 / 16000)
    assert "ask not what your" in live_text.lower(), live_text
    assert words("".join(live_chunks)), live_chunks

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
    assert NotHandled.from_event(unhandled).text == "Sorry, I couldn't understand that", unhandled

    heard, reply = await spoken_command(port, command_wav)
    assert words(heard) == words("turn on the kitchen light"), heard
    assert Handled.is_type(reply.type), reply
    assert Handled.from_event(reply).text, reply
    print("wyoming client: ok:", texts[0], "| live:", live_chunks, "|", heard, "→", Handled.from_event(reply).text)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
