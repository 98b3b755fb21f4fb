"""Load on `hearth serve`'s bounded queue, and a client that leaves mid-stream.

Usage: load.py BASE_URL API_KEY N. N requests at once: each is answered 200 or refused with
429/503, none lost, and the server answers afterwards. Then a streamed generation is
abandoned after a few chunks: the server must cancel it (metrics) and serve the next.
"""
import asyncio
import re
import sys
import time
import urllib.request

import openai
from openai import AsyncOpenAI, OpenAI


def metric(base, key, name):
    req = urllib.request.Request(base.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {key}"})
    text = urllib.request.urlopen(req, timeout=30).read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, (name, text)
    return float(m.group(1))


async def one(client, i):
    try:
        r = await client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": f"Count to {i % 7 + 3}."}],
            temperature=0,
            max_tokens=24,
        )
        assert r.choices[0].message.content is not None
        return 200
    except openai.RateLimitError:
        return 429
    except openai.InternalServerError as e:
        assert e.status_code == 503, e
        return 503


async def burst(base, key, n):
    client = AsyncOpenAI(base_url=base, api_key=key, max_retries=0, timeout=600)
    codes = await asyncio.gather(*(one(client, i) for i in range(n)))
    await client.close()
    return codes


def main(base, key, n):
    rejected_before = metric(base, key, "hearth_llm_rejected_total")
    codes = asyncio.run(burst(base, key, n))
    ok, refused = codes.count(200), codes.count(429) + codes.count(503)
    print(f"load: {n} requests: {ok} answered, {refused} refused")
    assert ok + refused == n, codes  # none lost
    assert ok >= 1 and refused >= 1, codes  # the queue is small: it must have refused some
    assert metric(base, key, "hearth_llm_rejected_total") - rejected_before == codes.count(429)
    assert metric(base, key, "hearth_llm_queue_depth") == 0

    client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
    cancelled_before = metric(base, key, "hearth_llm_cancelled_total")
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
        temperature=0,
        max_tokens=400,
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # hang up mid-generation
    # Wait (not a timing assertion: just until the server has noticed, at most 60 s).
    deadline = time.monotonic() + 60
    while metric(base, key, "hearth_llm_cancelled_total") == cancelled_before:
        assert time.monotonic() < deadline, "the abandoned generation was never cancelled"
        time.sleep(0.2)
    r = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=4
    )
    assert r.choices[0].message.content
    print("load: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
