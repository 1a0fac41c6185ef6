"""Evaluation set for near-duplicate detection, built from real documents.

Real documents (the committed sample under data/sample/, else ../shared/corpus)
are the *originals*; near-copies are made the way the web makes them: delete,
insert or replace 5-20% of the sentences, switch punctuation and letters between
full and half width, add a byline or a boilerplate paragraph, convert to
Traditional script (OpenCC s2t), truncate the tail, or several of these at once;
plus exact copies. Ground truth: a copy belongs to its original's family, and its
true Jaccard is measured exactly on the stage's shingles.

Originals that are already near-duplicates of each other (exact Jaccard >= 0.5:
real corpora have them) are thinned first so every family is distinct.

``python -m tests.neardup_eval`` prints precision/recall at the defaults through
the Beam stage, and ``--sweep`` the parameter study that chose the defaults (run
on the in-memory reference implementation, which gives the same decisions).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import random
import re
import sys
import time
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from corpusflow.counters import CounterDict
from corpusflow.document import SOURCES
from corpusflow.dedup import minhash as mh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_DIR = os.path.join(REPO, "data", "sample")
SHARED_CORPUS = os.path.normpath(os.path.join(REPO, "..", "shared", "corpus"))

KINDS = ("exact", "delete", "insert", "replace", "punct_width", "byline",
         "traditional", "truncate", "mixed")

Doc = tuple[str, str, str]  # (doc_id, source, text)


# --- real documents -------------------------------------------------------------------

def corpus_files(prefer: str = "sample") -> list[str]:
    """JSON-lines files of the committed sample (or ``prefer="shared"``: of
    ../shared/corpus), falling back to the other; [] if neither exists."""
    roots = (SAMPLE_DIR, SHARED_CORPUS) if prefer == "sample" else (SHARED_CORPUS, SAMPLE_DIR)
    for root in roots:
        files = sorted(f for pat in ("**/*.jsonl", "**/*.jsonl.gz", "**/*.json")
                       for f in glob.glob(os.path.join(root, pat), recursive=True))
        if files:
            return files
    return []


def _record_text(obj: dict) -> Optional[tuple[str, str, str]]:
    """(source, native id, text) of one record in the project's JSON input formats."""
    if not isinstance(obj, dict):
        return None
    rid = obj.get("id") or obj.get("news_id") or obj.get("qid")
    if isinstance(obj.get("paragraphs"), list):       # DuReader web documents
        source, parts = "text", [obj.get("title", "")] + [p for p in obj["paragraphs"]
                                                          if isinstance(p, str)]
    elif "content" in obj:                              # news2016zh
        source, parts = "news", [obj.get("title", ""), obj["content"]]
    elif "answer" in obj:                               # baike2018qa
        source, parts = "baike", [obj.get("title", ""), obj.get("desc", ""), obj["answer"]]
    elif "text" in obj:                                 # wiki2019zh / our own docs
        source, parts = obj.get("source") or "wiki", [obj["text"]]
    else:
        return None
    text = "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return source, (str(rid) if rid is not None else None), text


def load_documents(files: Sequence[str], min_chars: int = 200) -> list[Doc]:
    """Real documents with at least ``min_chars`` characters of comparison form."""
    docs: list[Doc] = []
    seen: set[str] = set()
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    got = _record_text(json.loads(line))
                except ValueError:
                    continue
                if got is None:
                    continue
                source, rid, text = got
                text = re.sub(r"\n\s*\n+", "\n", text).strip()
                doc_id = f"{source}:{rid or os.path.basename(path) + '#' + str(lineno)}"
                if doc_id in seen or len(mh.comparison_form(text)) < min_chars:
                    continue
                seen.add(doc_id)
                docs.append((doc_id, source, text))
    return docs


def exact_pairwise_jaccard(sets: Sequence[np.ndarray]) -> "object":
    """Sparse matrix of exact Jaccard between all pairs (upper triangle, > 0 only)."""
    from scipy import sparse
    vocab = np.unique(np.concatenate(sets)) if sets else np.empty(0, np.uint32)
    rows = np.concatenate([np.full(len(s), i) for i, s in enumerate(sets)])
    cols = np.searchsorted(vocab, np.concatenate(sets))
    x = sparse.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = sparse.triu(x @ x.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets])
    jac = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    return inter.row, inter.col, jac


def distinct_originals(docs: Sequence[Doc], ngram: int, max_jaccard: float = 0.5
                       ) -> tuple[list[Doc], int, list[float]]:
    """Drop documents whose exact Jaccard with an earlier kept one is >= max_jaccard.

    Returns (kept, number dropped, Jaccard of all remaining distinct pairs > 0).
    """
    sets = [mh.shingle_hashes(mh.comparison_form(t), ngram) for _, _, t in docs]
    r, c, j = exact_pairwise_jaccard(sets)
    drop: set[int] = set()
    for a, b, v in sorted(zip(r.tolist(), c.tolist(), j.tolist())):
        if v >= max_jaccard and a not in drop:
            drop.add(b)
    kept = [d for i, d in enumerate(docs) if i not in drop]
    rest = [v for a, b, v in zip(r.tolist(), c.tolist(), j.tolist())
            if a not in drop and b not in drop]
    return kept, len(drop), rest


# --- near-copies ------------------------------------------------------------------------

_SENT = re.compile(r"[^。！？!?；;\n]+[。！？!?；;…”」』）)]*\n?|[。！？!?；;\n]+")

_TO_HALF = str.maketrans({"，": ",", "。": ".", "：": ":", "；": ";", "！": "!", "？": "?",
                          "（": "(", "）": ")", "“": '"', "”": '"', "‘": "'", "’": "'",
                          "、": ",", "《": "<", "》": ">"})
_TO_FULL = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in
                          "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"})

MEDIA = ("新华网", "人民网", "中国新闻网", "新浪新闻", "搜狐", "澎湃新闻", "环球时报", "央视网")
NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏")
DISCLAIMER = ("免责声明：本文仅代表作者个人观点，与本网站无关。其原创性以及文中陈述文字和内容未经本站证实，"
              "对本文以及其中全部或者部分内容、文字的真实性、完整性、及时性本站不作任何保证或承诺，"
              "请读者仅作参考，并请自行核实相关内容。")


def sentences(text: str) -> list[str]:
    """Sentences with their end punctuation (joining them gives the text back)."""
    return _SENT.findall(text) or [text]


def _n_edits(rng: random.Random, n: int) -> int:
    return max(1, round(rng.uniform(0.05, 0.20) * n))


def _delete(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    s = sentences(text)
    for _ in range(min(_n_edits(rng, len(s)), len(s) - 1)):
        s.pop(rng.randrange(len(s)))
    return "".join(s)


def _insert(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    s = sentences(text)
    for _ in range(_n_edits(rng, len(s))):
        s.insert(rng.randrange(len(s) + 1), rng.choice(pool))
    return "".join(s)


def _replace(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    s = sentences(text)
    for i in rng.sample(range(len(s)), min(_n_edits(rng, len(s)), len(s))):
        s[i] = rng.choice(pool)
    return "".join(s)


def _punct_width(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    return text.translate(_TO_HALF).translate(_TO_FULL)


def _byline(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    date = f"{rng.randint(2010, 2020)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"
    lines = [f"来源：{rng.choice(MEDIA)}　作者：{rng.choice(NAMES)}　{date}",
             f"（责任编辑：{rng.choice(NAMES)}）",
             DISCLAIMER,
             f"本文转载自{rng.choice(MEDIA)}，原标题：{sentences(text)[0].strip()[:30]}"]
    extra = rng.choice(lines)
    return extra + "\n" + text if rng.random() < 0.5 else text + "\n" + extra


_S2T: list = []


def _traditional(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    if not _S2T:
        import opencc
        _S2T.append(opencc.OpenCC("s2t").convert)
    return _S2T[0](text)


def _truncate(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    return text[:round(len(text) * (1 - rng.uniform(0.05, 0.20)))]


def _mixed(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    for f in rng.sample([_delete, _replace, _insert, _punct_width, _byline, _truncate], 3):
        text = f(text, rng, pool)
    return text


# --- edits that keep most lines (the near-copies line dedup used to cut into fragments) --

_HALF_PUNCT = str.maketrans({",": "，", ".": "。", ":": "：", ";": "；", "!": "！", "?": "？",
                             "(": "（", ")": "）"})
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _width_half(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """Full-width punctuation to ASCII (a site that re-encodes its copy)."""
    return text.translate(_TO_HALF)


def _width_full(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """ASCII letters, digits and punctuation to full width."""
    return text.translate(_TO_FULL).translate(_HALF_PUNCT)


def _char_positions(text: str, rng: random.Random) -> list[int]:
    """A few (1%, at least 1, at most 8) positions of Chinese characters, sorted."""
    cjk = [m.start() for m in _CJK.finditer(text)] or list(range(len(text)))
    k = min(len(cjk), max(1, min(8, round(len(text) * 0.01))))
    return sorted(rng.sample(cjk, k))


def _chars_replaced(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    s = list(text)
    for i in _char_positions(text, rng):
        s[i] = chr(0x4E00 + int(rng.random() * 3000))
    return "".join(s)


def _chars_deleted(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    drop = set(_char_positions(text, rng))
    return "".join(c for i, c in enumerate(text) if i not in drop)


def _chars_inserted(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    s = list(text)
    for i in reversed(_char_positions(text, rng)):
        s.insert(i, chr(0x4E00 + int(rng.random() * 3000)))
    return "".join(s)


def _lines_reordered(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """Two lines swapped (two sentences of a one-line text)."""
    parts = _lines(text)
    sep = "\n"
    if len(parts) < 2:
        parts, sep = sentences(text), ""
    if len(parts) >= 2:
        i, j = rng.sample(range(len(parts)), 2)
        parts[i], parts[j] = parts[j], parts[i]
    return sep.join(parts)


def _lines_dropped(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """About 10% of the lines (at least one, never the first) dropped; of a
    one-line text, one sentence."""
    parts = _lines(text)
    sep = "\n"
    if len(parts) < 3:
        parts, sep = sentences(text), ""
    if len(parts) >= 3:
        k = max(1, round(0.1 * len(parts)))
        for i in sorted(rng.sample(range(1, len(parts)), k), reverse=True):
            parts.pop(i)
    return sep.join(parts)


def _para_appended(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """A paragraph of other real text appended as a new line."""
    return text + "\n" + rng.choice(pool)


# Kinds of ``build_line_copies``; ``PERTURB`` has them too.
LINE_KINDS = ("width_half", "width_full", "chars_replaced", "chars_deleted", "chars_inserted",
              "lines_reordered", "lines_dropped", "para_appended")


PERTURB: dict[str, Callable[[str, random.Random, Sequence[str]], str]] = {
    "exact": lambda t, r, p: t, "delete": _delete, "insert": _insert, "replace": _replace,
    "punct_width": _punct_width, "byline": _byline, "traditional": _traditional,
    "truncate": _truncate, "mixed": _mixed,
    "width_half": _width_half, "width_full": _width_full, "chars_replaced": _chars_replaced,
    "chars_deleted": _chars_deleted, "chars_inserted": _chars_inserted,
    "lines_reordered": _lines_reordered, "lines_dropped": _lines_dropped,
    "para_appended": _para_appended}


@dataclasses.dataclass
class EvalSet:
    docs: list[Doc]                 # originals and copies, in id order
    family: dict[str, str]          # doc id -> original id
    kind: dict[str, str]            # copy id -> perturbation kind
    true_jaccard: dict[str, float]  # copy id -> exact Jaccard with its original
    dropped_originals: int          # originals thinned because they were near-dups already
    distinct_jaccard: list[float]   # exact Jaccard of distinct original pairs (> 0)


def build_eval_set(originals: Sequence[Doc], copies_per_doc: int = 3, seed: int = 0,
                   ngram: int = 5, t2s: bool = False,
                   kinds: Sequence[str] = KINDS) -> EvalSet:
    """Originals (thinned to distinct) plus ``copies_per_doc`` copies each, kinds in
    rotation. ``t2s=True`` converts every text to Simplified afterwards, as the
    pipeline's clean stage does before dedup."""
    orig, n_dropped, distinct_j = distinct_originals(sorted(originals), ngram)
    pool = [s for _, _, t in orig for s in sentences(t) if len(s) >= 8]
    to_s = None
    if t2s:
        import opencc
        to_s = opencc.OpenCC("t2s").convert
    docs: list[Doc] = []
    family: dict[str, str] = {}
    kind: dict[str, str] = {}
    for i, (oid, source, text) in enumerate(orig):
        docs.append((oid, source, to_s(text) if to_s else text))
        family[oid] = oid
        for k in range(copies_per_doc):
            kd = kinds[(i * copies_per_doc + k) % len(kinds)]
            rng = random.Random(f"{seed}:{oid}:{kd}:{k}")  # str seeds are process-stable
            copy = PERTURB[kd](text, rng, pool)
            cid = f"{oid}~{kd}{k}"
            docs.append((cid, rng.choice(SOURCES), to_s(copy) if to_s else copy))
            family[cid] = oid
            kind[cid] = kd
    by_id = {d[0]: d for d in docs}
    true_j = {}
    for cid in kind:
        a = mh.shingle_set(mh.comparison_form(by_id[cid][2]), ngram)
        b = mh.shingle_set(mh.comparison_form(by_id[family[cid]][2]), ngram)
        true_j[cid] = mh.jaccard(a, b)
    return EvalSet(sorted(docs), family, kind, true_j, n_dropped, distinct_j)


# --- planted near-copies through the whole build --------------------------------------

@dataclasses.dataclass
class Planted:
    docs: list[Doc]                 # originals and one copy each, as written to the input
    family: dict[str, str]          # raw id -> original's raw id (originals map to themselves)
    kind: dict[str, str]            # copy raw id -> kind
    true_jaccard: dict[str, float]  # copy raw id -> exact char-n-gram Jaccard with its original


def plant_copies(originals: Sequence[Doc], pool: Sequence[str], seed: int = 0,
                 kinds: Sequence[str] = LINE_KINDS, ngram: int = 5) -> Planted:
    """One copy per original, kinds in rotation, same source; copy id ``{id}~{kind}``.

    ``pool``: real paragraphs for ``para_appended``, from documents not planted.
    The true Jaccard is on ``comparison_form`` (NFKC-folded) character n-grams.
    """
    docs: list[Doc] = []
    family: dict[str, str] = {}
    kind: dict[str, str] = {}
    true_j: dict[str, float] = {}
    for i, (oid, source, text) in enumerate(originals):
        kd = kinds[i % len(kinds)]
        rng = random.Random(f"{seed}:{oid}:{kd}")  # str seeds are process-stable
        copy = PERTURB[kd](text, rng, pool)
        cid = f"{oid}~{kd}"
        docs += [(oid, source, text), (cid, source, copy)]
        family[oid], family[cid] = oid, oid
        kind[cid] = kd
        true_j[cid] = mh.jaccard(mh.shingle_set(mh.comparison_form(text), ngram),
                                 mh.shingle_set(mh.comparison_form(copy), ngram))
    return Planted(docs, family, kind, true_j)


def write_input(planted: Planted, path: str) -> None:
    """The planted documents as wiki JSON lines (the build names them ``wiki:{id}``)."""
    with open(path, "w", encoding="utf-8") as f:
        for doc_id, _, text in planted.docs:
            f.write(json.dumps({"id": doc_id, "title": "", "text": text}, ensure_ascii=False) + "\n")


def _read_jsonl_gz(pattern: str) -> list[dict]:
    out = []
    for p in sorted(glob.glob(pattern)):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f)
    return out


def evaluate_build(planted: Planted, out_dir: str, min_j: float = 0.8) -> dict:
    """Whole-copy recall, removal precision and partial copies of a build's dedup stage.

    A copy counts as found only if exactly one of it and its original is in
    ``docs/`` and the other is gone whole. A *partial copy* is a family member in
    ``docs/`` whose text lost lines in dedup while the other member is there too.
    Precision: duplicate removals whose kept document is of the same family, over
    all duplicate removals of planted documents.
    """
    def raw(doc_id: str) -> str:
        return doc_id.split(":", 1)[1]

    clean = {raw(d["id"]): d["text"] for d in _read_jsonl_gz(f"{out_dir}/stages/clean/docs-*.jsonl.gz")}
    kept = {raw(d["id"]): d["text"] for d in _read_jsonl_gz(f"{out_dir}/docs/docs-*.jsonl.gz")}
    rejects = _read_jsonl_gz(f"{out_dir}/rejects/dedup-*.jsonl.gz")
    fam = planted.family
    copies = [c for c in planted.kind if c in clean and fam[c] in clean]
    found, partial, both, too_short = {}, [], [], 0
    for c in copies:
        o = fam[c]
        in_c, in_o = c in kept, o in kept
        found[c] = in_c != in_o
        if in_c and in_o:
            both.append(c)
            if kept[c] != clean[c] or kept[o] != clean[o]:
                partial.append(c)
    dups = [r for r in rejects if r.get("kind") == "duplicate" and raw(r["id"]) in fam]
    correct = sum(1 for r in dups if r.get("kept_id") and ":" in r["kept_id"]
                  and fam.get(raw(r["kept_id"])) == fam[raw(r["id"])])
    too_short = sum(1 for r in rejects if r.get("reason") == "too_short_after_dedup"
                    and raw(r["id"]) in fam)
    hi = [c for c in copies if planted.true_jaccard[c] >= min_j]
    by_kind = {}
    for k in sorted({planted.kind[c] for c in copies}):
        cs = [c for c in copies if planted.kind[c] == k]
        hk = [c for c in cs if planted.true_jaccard[c] >= min_j]
        by_kind[k] = {"n": len(cs), f"n_j>={min_j}": len(hk),
                      f"recall_whole_j>={min_j}": _ratio(found, hk),
                      "recall_whole_all": _ratio(found, cs),
                      "partial": sum(1 for c in partial if planted.kind[c] == k),
                      "median_j": round(float(np.median([planted.true_jaccard[c] for c in cs])), 3)}
    return {
        "copies": len(copies), f"n_j>={min_j}": len(hi),
        f"recall_whole_j>={min_j}": _ratio(found, hi), "recall_whole_all": _ratio(found, copies),
        "precision": round(correct / len(dups), 4) if dups else 1.0,
        "removals": len(dups), "false_removals": len(dups) - correct,
        "partial_copies": len(partial), "both_kept": len(both),
        "family_docs_too_short_after_dedup": too_short,
        "by_kind": by_kind,
    }


# --- running the stage --------------------------------------------------------------------

def reference_near_dedup(docs: Iterable[Doc], cfg: mh.NearDedupConfig,
                         inc: Optional[Callable] = None) -> tuple[dict[str, dict], list[dict]]:
    """In-memory reference of the Beam stage (union-find instead of star rounds):
    same pure functions, same decisions when CC converges. For tests and sweeps."""
    inc = CounterDict() if inc is None else inc
    signer = mh.Signer(cfg.num_perm, cfg.seed)
    buckets: dict = collections.defaultdict(list)
    sketches: dict = {}
    for doc_id, source, text in docs:
        dk = mh.document_keys(doc_id, source, text, cfg, signer, inc)
        if dk is None:
            continue
        sketches[dk.node] = dk.sketch
        for k in dk.keys:
            buckets[k].append(dk.member())
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for key in sorted(buckets):
        for a, b in mh.bucket_edges(buckets[key], cfg, inc):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    comps: dict = collections.defaultdict(list)
    for x in list(parent):
        comps[find(x)].append(x)
    dropped: dict[str, dict] = {}
    clusters = []
    for root, members in sorted(comps.items()):
        rec, drops = mh.resolve_cluster(root, sketches[root],
                                        [(m, sketches[m]) for m in members if m != root], inc)
        if rec:
            clusters.append(rec)
        dropped.update(drops)
    return dropped, sorted(clusters, key=lambda r: r["cluster_id"])


def beam_near_dedup(docs: Sequence[Doc], cfg: mh.NearDedupConfig, options=None, **kw
                    ) -> tuple[dict[str, dict], list[dict], dict[str, int]]:
    """Run the Beam composite on the FnApiRunner; (dropped, clusters by id, counters).

    Outputs (and the stage's run files) go through a temporary directory, so this
    works with multi-process workers too. ``kw``: more ``NearDedup`` arguments.
    """
    import tempfile

    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from pipelines.beam_util import query_counters
    from pipelines.near_dedup import NearDedup

    with tempfile.TemporaryDirectory(prefix="neardup-") as tmp:
        p = beam.Pipeline(runner=FnApiRunner(), options=options)
        out = p | beam.Create(list(docs)) | NearDedup(cfg, os.path.join(tmp, "runs"), **kw)
        for name in ("dropped", "clusters"):
            _ = (out[name]
                 | f"Json{name}" >> beam.Map(json.dumps, ensure_ascii=False, sort_keys=True)
                 | f"Write{name}" >> beam.io.WriteToText(os.path.join(tmp, name)))
        result = p.run()
        result.wait_until_finish()
        got = {}
        for name in ("dropped", "clusters"):
            got[name] = [json.loads(line) for f in sorted(glob.glob(os.path.join(tmp, name + "*")))
                         for line in open(f, encoding="utf-8")]
    clusters = sorted(got["clusters"], key=lambda r: r["cluster_id"])
    return dict(got["dropped"]), clusters, query_counters(result)


# --- metrics ------------------------------------------------------------------------------

def evaluate(es: EvalSet, dropped: dict[str, dict]) -> dict:
    """Recall of copies (by kind and true-Jaccard band), precision of removals."""
    def label(x: str) -> str:
        return dropped[x]["kept_id"] if x in dropped else x

    found = {c: label(c) == label(es.family[c]) for c in es.kind}
    hi = [c for c in es.kind if es.true_jaccard[c] >= 0.8]
    exact = [c for c in es.kind if es.kind[c] == "exact"]
    by_kind = {}
    for k in sorted(set(es.kind.values())):
        cs = [c for c in es.kind if es.kind[c] == k]
        hk = [c for c in cs if es.true_jaccard[c] >= 0.8]
        by_kind[k] = {"n": len(cs), "recall": _ratio(found, cs), "n_j>=0.8": len(hk),
                      "recall_j>=0.8": _ratio(found, hk),
                      "median_j": round(float(np.median([es.true_jaccard[c] for c in cs])), 3)}
    bands = {}
    edges = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
    for lo, hi_ in zip(edges, edges[1:]):
        cs = [c for c in es.kind if lo <= es.true_jaccard[c] < hi_]
        bands[f"[{lo:.1f},{min(hi_, 1.0):.1f}{']' if hi_ > 1 else ')'}"] = {
            "n": len(cs), "recall": _ratio(found, cs)}
    correct = sum(1 for x, d in dropped.items() if es.family[x] == es.family[d["kept_id"]])
    # Clusters mixing families: the "distinct documents" error.
    fam_of_label: dict[str, set] = collections.defaultdict(set)
    for x in es.family:
        fam_of_label[label(x)].add(es.family[x])
    originals = [x for x in es.family if es.family[x] == x]
    merged = [o for o in originals if len(fam_of_label[label(o)]) > 1]
    return {
        "originals": len(originals), "copies": len(es.kind),
        "dropped_originals_already_near_dup": es.dropped_originals,
        "removed": len(dropped),
        "recall_j>=0.8": _ratio(found, hi), "n_j>=0.8": len(hi),
        "recall_exact": _ratio(found, exact), "n_exact": len(exact),
        "recall_all": _ratio(found, list(es.kind)),
        "precision": round(correct / len(dropped), 4) if dropped else 1.0,
        "false_removals": len(dropped) - correct,
        "distinct_merged_rate": round(len(merged) / len(originals), 4) if originals else 0.0,
        "by_kind": by_kind, "by_true_jaccard": bands,
    }


def _ratio(found: dict[str, bool], ids: Sequence[str]) -> Optional[float]:
    return round(sum(found[c] for c in ids) / len(ids), 4) if ids else None


# --- CLI ---------------------------------------------------------------------------------

def _main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", action="store_true", help="parameter study (reference impl.)")
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="originals to use (0: all)")
    ap.add_argument("--corpus", choices=("sample", "shared"), default="shared")
    ap.add_argument("--decontam", action="store_true", help="decontamination n-gram study")
    args = ap.parse_args(argv)
    if args.decontam:
        for row in decontam_study():
            print(json.dumps(row, ensure_ascii=False))
        return
    files = corpus_files(args.corpus)
    if not files:
        sys.exit("no corpus: neither data/sample nor ../shared/corpus has JSON lines")
    docs = load_documents(files)
    if args.limit:
        docs = docs[:args.limit]
    print(f"{len(docs)} real documents from {len(files)} files", file=sys.stderr)
    if args.sweep:
        _sweep(docs, args.copies)
        return
    cfg = mh.NearDedupConfig()
    for t2s in (False, True):
        es = build_eval_set(docs, args.copies, ngram=cfg.ngram, t2s=t2s)
        t0 = time.time()
        dropped, clusters, counters = beam_near_dedup(es.docs, cfg)
        ref, _ = reference_near_dedup(es.docs, cfg)
        res = evaluate(es, dropped)
        res["beam_equals_reference"] = ref == dropped
        res["counters"] = counters
        res["seconds"] = round(time.time() - t0, 1)
        res["t2s_before_dedup"] = t2s
        print(json.dumps(res, ensure_ascii=False, indent=1))


def _sweep(docs: Sequence[Doc], copies: int) -> None:
    """One factor at a time around the defaults: shingle size, permutations,
    threshold, LSH weights against recall, precision and cost (T->S applied, as in
    the pipeline). ``bg_pairs>=0.3``: distinct original pairs whose exact Jaccard at
    that n is >= 0.3 (how close unrelated documents come)."""
    d = mh.NearDedupConfig()
    grid = ([{"ngram": n} for n in (3, 4, 5, 7, 9)]
            + [{"num_perm": p} for p in (64, 256)]
            + [{"threshold": t} for t in (0.6, 0.8)]
            + [{"weights": (0.5, 0.5)}])
    originals, _, _ = distinct_originals(sorted(docs), d.ngram)
    by_n: dict[int, tuple] = {}
    for change in grid:
        cfg = dataclasses.replace(d, **change)
        if cfg.ngram not in by_n:
            es = build_eval_set(originals, copies, ngram=cfg.ngram, t2s=True)
            sets = [mh.shingle_hashes(mh.comparison_form(t), cfg.ngram) for _, _, t in originals]
            _, _, bg = exact_pairwise_jaccard(sets)
            by_n[cfg.ngram] = (es, int((bg >= 0.3).sum()))
        es, bg30 = by_n[cfg.ngram]
        c = CounterDict()
        t0 = time.process_time()
        dropped, _ = reference_near_dedup(es.docs, cfg, c)
        secs = time.process_time() - t0
        r = evaluate(es, dropped)
        print(json.dumps({
            "change": change or "defaults", "b,r": cfg.lsh_params(),
            "share_j>=0.8": round(r["n_j>=0.8"] / r["copies"], 3),
            "recall_j>=0.8": r["recall_j>=0.8"], "recall_j[0.7,0.8)":
                r["by_true_jaccard"]["[0.7,0.8)"]["recall"], "recall_all": r["recall_all"],
            "precision": r["precision"], "merged": r["distinct_merged_rate"],
            "compared_pairs": c["neardup:candidate_pairs"], "cpu_s": round(secs, 2),
            "bg_pairs>=0.3": bg30}), flush=True)


# --- decontamination study ------------------------------------------------------------------

def decontam_study(ngrams: Sequence[int] = (8, 10, 13, 16, 20), seed: int = 0) -> list[dict]:
    """Choose the decontamination n-gram length on real text.

    Evaluation set: DuReader questions and answers (baike2018qa layout). Clean
    corpus: wiki and news documents (not DuReader), so a flag there is a false
    positive. Planted: a clean document with one evaluation text (>= 8 chars of
    form) inserted, which must be flagged. Real: DuReader's own web documents, from
    which the answers were taken.
    """
    from corpusflow.dedup.decontam import DecontamConfig, EvalIndex, eval_texts
    root = SHARED_CORPUS if os.path.isdir(SHARED_CORPUS) else SAMPLE_DIR
    qa = sorted(glob.glob(os.path.join(root, "**", "*qa*.baike2018qa.jsonl"), recursive=True))
    web = sorted(glob.glob(os.path.join(root, "**", "*dureader*doc*.jsonl"), recursive=True))
    clean = load_documents([f for f in corpus_files("shared" if root == SHARED_CORPUS else "sample")
                            if "dureader" not in os.path.basename(f)], min_chars=50)
    texts = [t for f in qa for t in eval_texts(open(f, encoding="utf-8").read())]
    rng = random.Random(seed)
    usable = [t for t in texts if len(mh.comparison_form(t)) >= 8]
    planted = []
    for i, (_, _, text) in enumerate(clean[:300]):
        s = sentences(text)
        s.insert(rng.randrange(len(s) + 1), rng.choice(usable))
        planted.append("".join(s))
    web_docs = load_documents(web, min_chars=50)
    rows = []
    for n in ngrams:
        cfg = DecontamConfig(ngram=n, min_text_chars=min(8, n))
        idx = EvalIndex.from_texts([("qa", texts)], cfg)
        c = CounterDict()
        fp = [(d[0], h["excerpt"]) for d in clean if (h := idx.check(d[2], c))]
        tp = sum(1 for t in planted if idx.check(t, c))
        real = sum(1 for d in web_docs if idx.check(d[2], c))
        rows.append({"ngram": n, "clean_docs": len(clean), "false_flags": len(fp),
                     "false_flag_rate": round(len(fp) / len(clean), 4),
                     "planted_recall": round(tp / len(planted), 4),
                     "dureader_web_flagged": round(real / max(len(web_docs), 1), 4),
                     "index": idx.stats, "examples": fp[:5]})
    return rows


if __name__ == "__main__":
    _main()
