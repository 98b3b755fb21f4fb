#!/usr/bin/env python3
"""hassil reference for Hearth's intent engine (run with ${HEARTH_HOME}/venv/bin/python).

  intents-reference.py fixture DATA.json HOME.yaml OUT.json
      Samples sentences from the templates of the supported intents, filled with the
      home's names (fixed seed), records hassil's intent and slots for each, and adds
      slightly-off phrasings (fillers, misspelled names, doubled articles) that hassil
      rejects, with the intent/slots of the clean sentence they came from.
  intents-reference.py bench DATA.json HOME.yaml TEXTS.json
      Runs hassil over TEXTS.json (a list of strings) and prints one JSON object per
      text: {"text", "intent", "slots", "us"} (matching time in microseconds).
"""
import json
import random
import sys
import time

import yaml
from hassil import Intents, recognize_best
from hassil.expression import (
    Alternative,
    ListReference,
    Permutation,
    RuleReference,
    Sequence,
    TextChunk,
)
from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList
from unicode_rbnf import RbnfEngine

SUPPORTED = [
    "HassTurnOn", "HassTurnOff", "HassToggle", "HassLightSet", "HassGetState",
    "HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassPauseTimer",
    "HassUnpauseTimer", "HassTimerStatus", "HassIncreaseTimer", "HassDecreaseTimer",
    "HassClimateSetTemperature", "HassClimateGetTemperature", "HassGetCurrentTime",
    "HassGetCurrentDate", "HassGetWeather", "HassSetPosition", "HassFanSetSpeed",
    "HassMediaPause", "HassMediaUnpause", "HassMediaNext", "HassMediaPrevious",
    "HassSetVolume", "HassListAddItem", "HassNevermind",
]
SEED = 20261129
N_SENTENCES = 400
WILDCARD_WORDS = ["milk", "eggs", "pasta sauce", "laundry", "pizza", "tea", "jazz"]
FILLERS = ["uh", "um", "just", "hmm"]
RBNF = RbnfEngine.for_language("en")


def load(data_path, home_path):
    with open(data_path, encoding="utf-8") as f:
        intents = Intents.from_dict(json.load(f))
    with open(home_path, encoding="utf-8") as f:
        home = yaml.safe_load(f)
    names = []
    for e in home.get("entities") or []:
        if not e.get("exposed", True):
            continue
        ctx = {"domain": e["domain"]}
        if e.get("device_class"):
            ctx["device_class"] = e["device_class"]
        for said in [e["name"]] + list(e.get("aliases") or []):
            names.append((said, e["name"], ctx))

    def plain(items):
        return [(s, i["name"]) for i in items for s in [i["name"]] + list(i.get("aliases") or [])]

    slot_lists = {
        "name": TextSlotList.from_tuples(names, allow_template=False, name="name"),
        "area": TextSlotList.from_tuples(plain(home.get("areas") or []), allow_template=False, name="area"),
        "floor": TextSlotList.from_tuples(plain(home.get("floors") or []), allow_template=False, name="floor"),
    }
    context = {}
    if home.get("satellite_area"):
        area = next(
            a["name"] for a in home["areas"]
            if a["name"].lower() == home["satellite_area"].lower()
        )
        context["area"] = {"value": area, "text": area}
    return intents, slot_lists, context


def recognize(text, intents, slot_lists, context):
    r = recognize_best(text, intents, slot_lists=slot_lists, intent_context=context)
    if r is None:
        return None, {}
    slots = {}
    for e in r.entities_list:
        v = e.value
        if isinstance(v, dict) and "value" in v:
            v = v["value"]
        slots[e.name] = v
    return r.intent.name, slots


def sample(exp, intents, slot_lists, rng, picked):
    """One random expansion of exp; records the home names used in `picked`."""
    if isinstance(exp, TextChunk):
        return exp.original_text
    if isinstance(exp, Alternative):
        return sample(rng.choice(exp.items), intents, slot_lists, rng, picked)
    if isinstance(exp, Permutation):
        items = list(exp.items)
        rng.shuffle(items)
        return " ".join(sample(i, intents, slot_lists, rng, picked) for i in items)
    if isinstance(exp, Sequence):
        return "".join(sample(i, intents, slot_lists, rng, picked) for i in exp.items)
    if isinstance(exp, RuleReference):
        return sample(intents.expansion_rules[exp.rule_name].expression, intents, slot_lists, rng, picked)
    if isinstance(exp, ListReference):
        lst = slot_lists.get(exp.list_name) or intents.slot_lists.get(exp.list_name)
        if isinstance(lst, TextSlotList):
            if not lst.values:
                raise LookupError(exp.list_name)
            v = rng.choice(lst.values)
            text = sample(v.text_in, intents, slot_lists, rng, picked)
            if exp.list_name in ("name", "area", "floor"):
                picked.append(text)
            return text
        if isinstance(lst, RangeSlotList):
            n = rng.randrange(lst.start, lst.stop + 1, lst.step)
            return RBNF.format_number(n).text if rng.random() < 0.3 else str(n)
        if isinstance(lst, WildcardSlotList):
            return rng.choice(WILDCARD_WORDS)
        raise LookupError(exp.list_name)
    raise TypeError(type(exp))


def misspell(word, rng):
    """One substitution or deletion in the middle of a long word (an STT slip)."""
    i = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1:]
    return word[:i] + rng.choice("aeiou") + word[i + 1:]


def perturb(text, picked, rng):
    kind = rng.choice(["filler", "misspell", "article"])
    words = text.split()
    if kind == "misspell":
        long_names = [p for p in picked if len(p) >= 8 and p in text]
        if long_names:
            name = rng.choice(long_names)
            parts = name.split()
            j = max(range(len(parts)), key=lambda k: len(parts[k]))
            if len(parts[j]) >= 5:
                parts[j] = misspell(parts[j], rng)
                return text.replace(name, " ".join(parts), 1), kind
        kind = "filler"
    if kind == "article" and len(words) > 2:
        i = rng.randrange(1, len(words))
        return " ".join(words[:i] + ["the", "the"] + words[i:]), kind
    i = rng.randrange(0, len(words) + 1)
    return " ".join(words[:i] + [rng.choice(FILLERS)] + words[i:]), "filler"


def fixture(data_path, home_path, out_path):
    intents, slot_lists, context = load(data_path, home_path)
    rng = random.Random(SEED)
    templates = [
        (name, s)
        for name in SUPPORTED
        if name in intents.intents  # HassToggle has no English sentences in this release
        for block in intents.intents[name].data
        for s in block.sentences
    ]
    cases, off, seen = [], [], set()
    for name, sentence in rng.sample(templates, min(N_SENTENCES, len(templates))):
        picked = []
        try:
            text = " ".join(sample(sentence.expression, intents, slot_lists, rng, picked).split())
        except LookupError:
            continue  # a list the home does not fill
        if not text or text in seen:
            continue
        seen.add(text)
        intent, slots = recognize(text, intents, slot_lists, context)
        cases.append({"text": text, "template_intent": name, "intent": intent, "slots": slots})
        if intent is not None and rng.random() < 0.5:
            bad, kind = perturb(text, picked, rng)
            if recognize(bad, intents, slot_lists, context)[0] is None:
                off.append({"text": bad, "kind": kind, "from": text, "intent": intent, "slots": slots})
    out = {
        "generator": "scripts/intents-reference.py fixture (hassil 3.13.0, home-assistant-intents 2026.11.25)",
        "seed": SEED,
        "home": "examples/home.yaml",
        "cases": cases,
        "off_phrasings": off,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    accepted = sum(c["intent"] is not None for c in cases)
    print(f"{len(cases)} sentences ({accepted} accepted by hassil), {len(off)} off-phrasings -> {out_path}")


def bench(data_path, home_path, texts_path):
    intents, slot_lists, context = load(data_path, home_path)
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    for t in texts[:3]:  # warm caches (tries, compiled patterns)
        recognize(t, intents, slot_lists, context)
    for t in texts:
        start = time.perf_counter()
        intent, slots = recognize(t, intents, slot_lists, context)
        us = (time.perf_counter() - start) * 1e6
        print(json.dumps({"text": t, "intent": intent, "slots": slots, "us": us}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["-h"]
    if cmd == "fixture" and len(args) == 3:
        fixture(*args)
    elif cmd == "bench" and len(args) == 3:
        bench(*args)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
