"""Near-copies are removed whole with line dedup on (default options + --near_dedup true).

Real multi-line Wikipedia articles from data/sample get one planted near-copy each
(every kind of ``neardup_eval.LINE_KINDS``); four more articles share a
boilerplate line. The whole build runs to the end of the dedup stage.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from corpusflow.dedup import exact
from corpusflow.document import SOURCES
from corpusflow.dedup import minhash as mh
from tests import neardup_eval as ev

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _read(pattern: str, out: Path) -> dict[str, str]:
    docs = {}
    for p in sorted(out.glob(pattern)):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                docs[d["id"]] = d["text"]
    return docs


def _planted():
    wiki = ev.load_documents([str(SAMPLE / "zhwiki_sample.jsonl")], min_chars=300)
    distinct, _, _ = ev.distinct_originals(sorted(wiki), 5)
    multi = [d for d in distinct if sum(len(x) >= 10 for x in d[2].split("\n")) >= 3]
    assert len(multi) >= 12
    web, _, _ = ev.distinct_originals(sorted(ev.load_documents(
        [str(SAMPLE / "dureader_docs.jsonl")], min_chars=300)), 5)
    pool = [x for d in web[8:] for x in d[2].split("\n") if 30 <= len(x) <= 200][:50]
    planted = ev.plant_copies(multi[:12], pool)
    boiler = [(i, s, t + "\n" + ev.DISCLAIMER) for i, s, t in web[:4]]
    return planted, boiler


def test_near_copies_removed_whole_with_line_dedup_on(tmp_path):
    from pipelines.build import run
    planted, boiler = _planted()
    ev.write_input(planted, str(tmp_path / "planted.jsonl"))
    with open(tmp_path / "planted.jsonl", "a", encoding="utf-8") as f:
        for doc_id, _, text in boiler:
            f.write(json.dumps({"id": doc_id, "title": "", "text": text}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    m = run(["--input", str(tmp_path / "planted.jsonl"), "--output", str(out),
             "--near_dedup", "true", "--stop_after", "dedup", "--progress", "false",
             "--num_doc_shards", "2"])
    clean = _read("stages/clean/docs-*.jsonl.gz", out)
    kept = _read("docs/docs-*.jsonl.gz", out)
    assert len(clean) == 2 * 12 + 4  # cleaning kept every document

    # Which member of each family stays: exact duplicates keep the smallest id,
    # near duplicates the longest text (then the smallest id); same source here.
    want_kept, want_exact, want_near = set(), 0, 0
    for cid, oid in ((c, planted.family[c]) for c in planted.kind):
        assert planted.true_jaccard[cid] >= 0.8, (cid, planted.true_jaccard[cid])
        a, b = f"wiki:{oid}", f"wiki:{cid}"
        if exact.text_key(clean[a]) == exact.text_key(clean[b]):
            want_kept.add(min(a, b))
            want_exact += 1
        else:
            want_kept.add(min((a, b), key=lambda x: mh.make_node(x, "wiki", clean[x], SOURCES)))
            want_near += 1
    boiler_ids = sorted(f"wiki:{i}" for i, _, _ in boiler)
    assert set(kept) == want_kept | set(boiler_ids)  # exact ids: every copy gone whole
    # Nothing kept lost a line to a removed near-copy; the boilerplate line stays
    # in the first boilerplate article only (C4-style line dedup still works).
    for doc_id in want_kept:
        assert kept[doc_id] == clean[doc_id], doc_id
    assert kept[boiler_ids[0]] == clean[boiler_ids[0]]
    for doc_id in boiler_ids[1:]:
        assert kept[doc_id] == clean[doc_id].rsplit("\n", 1)[0]
    c = m["counters"]
    assert want_exact >= 2 and want_near >= 8
    assert c["dedup:duplicate:exact"] == want_exact
    assert c["dedup:duplicate:near"] == want_near
    assert c["dedup:lines:removed"] == 3 and c["dedup:lines:docs_changed"] == 3
    assert "dedup:lines:partial_copies" not in c
    assert "dedup:filtered:too_short_after_dedup" not in c
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))["stages"]["dedup"]
    assert stats["line_dedup"] == {"docs_changed": 3, "lines_removed": 3}
    assert stats["reasons"] == {"dedup:exact_duplicate": want_exact,
                                "dedup:near_duplicate": want_near}


def test_shared_corpus_copies_removed_whole(tmp_path):
    """The benchmark's setting on a slice of ../shared/corpus: whole-copy recall
    >= 0.95 at Jaccard >= 0.8, precision >= 0.99, no partial copy of a J >= 0.8 pair."""
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    if not shared.is_dir():
        pytest.skip("../shared/corpus is absent")
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from near_dedup_bench import choose, run_build
    originals, pool = choose("shared", 120)
    planted = ev.plant_copies(originals, pool)
    ev.write_input(planted, str(tmp_path / "in.jsonl"))
    run_build(str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "true", [])
    res = ev.evaluate_build(planted, str(tmp_path / "out"))
    assert res["n_j>=0.8"] >= 200
    assert res["recall_whole_j>=0.8"] >= 0.95, res
    assert res["precision"] >= 0.99, res
