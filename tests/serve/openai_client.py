"""The `openai` Python client against `hearth serve`'s HTTP API.

Usage: openai_client.py BASE_URL API_KEY JFK_WAV PROMPT N. Prints {"chat": text} (the greedy
reply, which the caller compares with `hearth run`); exits non-zero on any mismatch.
"""
import json
import sys

import openai
from openai import OpenAI


def main(base, key, wav, prompt, n):
    client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
    models = [m.id for m in client.models.list()]
    # Two models: the default, and the same file served as "smol-b" with its own queue.
    assert models == ["smollm2-135m-instruct", "smol-b"], models
    model = models[0]
    messages = [{"role": "user", "content": prompt}]

    r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=n)
    text = r.choices[0].message.content
    assert text and r.choices[0].message.role == "assistant", r
    assert r.choices[0].finish_reason in ("stop", "length"), r
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0, r.usage

    chunks = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=n, stream=True
    )
    pieces, finish = [], None
    for c in chunks:
        pieces.append(c.choices[0].delta.content or "")
        finish = c.choices[0].finish_reason or finish
    assert "".join(pieces) == text, (pieces, text)
    assert finish == r.choices[0].finish_reason, finish
    assert len([p for p in pieces if p]) > 1, pieces  # really streamed, piece by piece

    # `model` selects: the same weights under the other name give the same greedy reply.
    b = client.chat.completions.create(model="smol-b", messages=messages, temperature=0, max_tokens=n)
    assert b.model == "smol-b" and r.model == model, (b.model, r.model)
    assert b.choices[0].message.content == text, (b, text)
    try:
        client.chat.completions.create(model="gpt-17", messages=messages, max_tokens=1)
        raise AssertionError("an unknown model was served")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.code == "model_not_found", e.body
        assert e.body["type"] == "invalid_request_error" and "gpt-17" in e.body["message"], e.body

    c = client.completions.create(model=model, prompt="The capital of France is", temperature=0, max_tokens=8)
    assert c.choices[0].text.strip(), c

    with open(wav, "rb") as f:
        t = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert "ask not what your country can do for you" in t.text.lower(), t.text

    bad = OpenAI(base_url=base, api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError:
        pass
    try:
        client.chat.completions.create(model=model, messages=[{"role": "wizard", "content": "hi"}])
        raise AssertionError("a bad role was accepted")
    except openai.BadRequestError:
        pass
    print(json.dumps({"chat": text}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
