"""Tests for corpusflow.clean.cleaner: composition, rejects, counters, pickling."""

from __future__ import annotations

import json
import pathlib
import pickle

import pytest

from corpusflow.clean import cleaner as cleaner_mod
from corpusflow.clean import normalize
from corpusflow.clean.cleaner import CleanConfig, Cleaner
from corpusflow.counters import CounterDict
from corpusflow.document import Document, Reject

CORPUS = pathlib.Path("/work/shared/corpus")
BODY = "數學是利用符號語言研究數量、結構、變化以及空間等概念的一門學科。"


def doc(text: str, title: str = "標題", **meta) -> Document:
    return Document(id="wiki:1", source="wiki", title=title, text=text,
                    meta={"file": "f.jsonl", "line": 3, **meta})


@pytest.fixture(scope="module")
def cleaner() -> Cleaner:
    c = Cleaner()
    c.setup()
    return c


def test_kept_document(cleaner):
    counts = CounterDict()
    d = doc(f"{BODY}<br>&nbsp;第２段 -{{zh-cn:内容;zh-tw:內容}}-。\n\n")
    out = cleaner.clean(d, counts)
    assert out == Document(
        id="wiki:1", source="wiki", title="标题",
        text="数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科。\n第2段 内容。",
        # Issue 20: kept documents carry meta.quality (38 non-space characters:
        # 33 CJK, 4 punctuation marks, 2 sentences; nothing repeated, no boilerplate).
        meta={"file": "f.jsonl", "line": 3,
              "quality": {"cjk": 0.8684, "punct": 0.1053, "sent_len": 19.0, "dup5": 0.0, "dup10": 0.0,
                          "boiler": 0.0}})
    assert counts.as_dict() == {
        "clean:kept": 1,
        "clean:normalized:html": 1,
        "clean:normalized:t2s": 1,
        "clean:normalized:whitespace": 1,
        "clean:normalized:width": 1,
        "clean:normalized:wiki_markup": 1,
    }
    # the input is not modified
    assert d.text.startswith("數學") and out.meta is not d.meta


@pytest.mark.parametrize("text,reason", [
    ("<p> &nbsp; </p>", "empty_after_clean"),
    ("太短了。", "too_short"),
    ("The quick brown fox jumps over the lazy dog.", "low_cjk"),
    ("\n".join(["请点击这里关注我们的公众号获取更多"] * 3), "repeated_lines"),
    ("\ufffd" * 10 + BODY, "bad_encoding"),
])
def test_filtered_document(cleaner, text, reason):
    counts = CounterDict()
    d = doc(text)
    out = cleaner.clean(d, counts)
    assert out == Reject(stage="clean", reason=reason, kind="filtered", id="wiki:1",
                         file="f.jsonl", line=3, excerpt=text)
    assert counts[f"clean:filtered:{reason}"] == 1
    assert "clean:kept" not in counts


def test_filtered_counters_exact(cleaner):
    counts = CounterDict()
    cleaner.clean(doc("太短了。"), counts)
    assert counts.as_dict() == {"clean:filtered:too_short": 1}


def test_too_long_uses_config():
    c = Cleaner(CleanConfig.of(t2s=False, max_chars=30))
    counts = CounterDict()
    assert c.clean(doc(BODY * 2), counts).reason == "too_long"
    assert counts.as_dict() == {"clean:filtered:too_long": 1}


def test_t2s_off_keeps_traditional():
    c = Cleaner(CleanConfig(t2s=False))
    c.setup()
    assert c._converter is None
    counts = CounterDict()
    out = c.clean(doc(BODY), counts)
    assert out.text == BODY and out.title == "標題"
    assert counts.as_dict() == {"clean:kept": 1}


def test_error_becomes_reject(monkeypatch):
    def boom(text, inc):
        raise ValueError("bad rule")

    monkeypatch.setattr(normalize, "fold_width", boom)
    c = Cleaner(CleanConfig(t2s=False))
    counts = CounterDict()
    out = c.clean(doc(f"{BODY}<br>"), counts)
    assert out == Reject(stage="clean", reason="clean_error", kind="rejected", id="wiki:1",
                         file="f.jsonl", line=3, excerpt=f"{BODY}<br>",
                         detail="ValueError: bad rule")
    # the html rule ran before the failure but is not counted
    assert counts.as_dict() == {"clean:rejected:clean_error": 1}


def test_malformed_text_becomes_reject():
    counts = CounterDict()
    out = Cleaner(CleanConfig(t2s=False)).clean(doc(None), counts)  # type: ignore[arg-type]
    assert (out.kind, out.reason, out.id, out.line) == ("rejected", "clean_error", "wiki:1", 3)
    assert out.detail.startswith("TypeError")
    assert counts.as_dict() == {"clean:rejected:clean_error": 1}


def test_pickle_before_and_after_setup():
    c = Cleaner(CleanConfig.of(min_chars=5))
    assert c._converter is None                      # nothing loaded at construction
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.config == CleanConfig.of(min_chars=5)
    c.setup()
    first = c._converter
    c.setup()
    assert c._converter is first                     # idempotent
    c3 = pickle.loads(pickle.dumps(c))               # the native handle is not pickled
    assert c3._converter is None
    counts = CounterDict()
    assert c3.clean(doc(BODY), counts).text.startswith("数学")   # loads lazily
    assert c3._converter is not None


def test_counter_vocabulary_registered():
    assert set(cleaner_mod.COUNTERS) == {
        "clean:kept", "clean:rejected:clean_error", "clean:filtered:bad_encoding",
        "clean:filtered:empty_after_clean", "clean:filtered:too_short",
        "clean:filtered:too_long", "clean:filtered:low_cjk", "clean:filtered:repeated_lines"}


@pytest.mark.skipif(not (CORPUS / "wiki/zhwiki_AA_wiki_00.jsonl").exists(), reason="no corpus")
def test_real_wiki(cleaner):
    counts = CounterDict()
    outs = []
    for i, line in enumerate((CORPUS / "wiki/zhwiki_AA_wiki_00.jsonl").open(encoding="utf-8")):
        o = json.loads(line)
        outs.append(cleaner.clean(Document(id=f"wiki:{o['id']}", source="wiki", title=o["title"],
                                           text=o["text"], meta={"line": i + 1}), counts))
    kept = [o for o in outs if isinstance(o, Document)]
    assert counts["clean:kept"] == len(kept) >= 60
    assert counts["clean:rejected:clean_error"] == 0
    assert all("-{" not in d.text and "數學" not in d.text for d in kept)
