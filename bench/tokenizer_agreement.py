"""How often do the pipeline's WordPiece ids equal BERT's reference tokenizers'?

    python bench/tokenizer_agreement.py [--corpus ../shared/corpus] [--vocab V]
        [--no-google] [--codepoints] [--json OUT]

Every text unit of every file under ``--corpus`` (each line; a JSON-lines
record's text fields; see ``corpusflow.tokenize.agreement``), as read and as the
instances stage tokenizes it (cleaned with T->S, split into sentences, joined
with newlines), tokenized with the pipeline's ``FullTokenizer`` and with
``tokenizers.BertWordPieceTokenizer``, ``transformers.BertTokenizerFast`` and
Google's ``tokenization.py`` (from ``../shared/anchors``; pure Python, the slow
part). Prints ``agree/units`` per reference and view, the first differences,
and whether any ``[unusedN]``, ``##``+CJK or whitespace id was emitted.
``--codepoints`` also tokenizes every Unicode code point in context
(``x<c>y 中<c>a``) with ours and each reference (about a minute per reference).
Exit status 1 when the pipeline and ``tokenizers`` disagree anywhere on the corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpusflow.tokenize import DEFAULT_VOCAB  # noqa: E402
from corpusflow.tokenize import agreement as ag  # noqa: E402
from corpusflow.tokenize.wordpiece import FullTokenizer  # noqa: E402

SHARED = REPO.parent / "shared"


def codepoint_sweep(ours: ag.Encoder, refs: dict[str, ag.Encoder]) -> dict[str, dict]:
    """Per reference: code points whose in-context ids differ, by Unicode category."""
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    out: dict[str, dict] = {name: {"differ": 0, "by_category": {}, "examples": []} for name in refs}
    for k in range(0, len(cps), 20000):
        chunk = cps[k:k + 20000]
        texts = ["x" + chr(c) + "y 中" + chr(c) + "a" for c in chunk]
        mine = ours(texts)
        for name, enc in refs.items():
            r = out[name]
            for c, a, b in zip(chunk, mine, enc(texts)):
                if a != b:
                    cat = unicodedata.category(chr(c))
                    r["differ"] += 1
                    r["by_category"][cat] = r["by_category"].get(cat, 0) + 1
                    if len(r["examples"]) < 10:
                        r["examples"].append(f"U+{c:04X} {cat} {unicodedata.name(chr(c), '?')}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=str(SHARED / "corpus"))
    p.add_argument("--vocab", default=DEFAULT_VOCAB)
    p.add_argument("--google", default=str(SHARED / "anchors" / "google_bert" / "tokenization.py"))
    p.add_argument("--no-google", action="store_true", help="skip Google's (slow, pure Python) tokenizer")
    p.add_argument("--codepoints", action="store_true", help="also sweep every Unicode code point")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if not Path(args.corpus).is_dir():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2

    tok = FullTokenizer(args.vocab)
    ours = ag.ours_encoder(args.vocab)
    refs = {"tokenizers": ag.hf_tokenizers_encoder(args.vocab)}
    try:
        refs["transformers"] = ag.transformers_encoder(args.vocab)
    except ImportError:
        print("transformers not installed: skipped", file=sys.stderr)
    if not args.no_google and Path(args.google).exists():
        refs["google"] = ag.google_encoder(args.google, args.vocab)

    t0 = time.time()
    units = list(ag.corpus_units(args.corpus))
    files = ag.corpus_files(args.corpus)
    print(f"{args.corpus}: {len(files)} files, {len(units):,} text units, "
          f"{sum(len(u.text) for u in units):,} characters; vocab {args.vocab} ({len(tok):,} entries)")
    bad = set().union(*ag.forbidden_ids(tok.inv_vocab).values())
    report: dict = {"corpus": args.corpus, "files": len(files), "units": len(units), "views": {}}
    status = 0
    for name, view in (("raw", None), ("pipeline", ag.PipelineView())):
        t = time.time()
        res = ag.compare(units, ours, refs, view, inv_vocab=tok.inv_vocab)
        texts = [view(u.text) if view else u.text for u in units]
        emitted_bad = sorted({tok.inv_vocab[i] for ids in ours(texts) for i in ids if i in bad})
        print(f"view {name} ({time.time() - t:.1f}s):")
        for r in res.values():
            print("  " + r.line())
            for d in r.differences[:5]:
                print("    " + json.dumps(d, ensure_ascii=False)[:300])
        print(f"  forbidden ids emitted ([unusedN], ##CJK, whitespace): {emitted_bad or 'none'}")
        if res["tokenizers"].agree != res["tokenizers"].units or emitted_bad:
            status = 1
        report["views"][name] = {k: {"agree": r.agree, "units": r.units, "tokens": r.tokens,
                                     "differences": r.differences} for k, r in res.items()}
        report["views"][name]["forbidden_emitted"] = emitted_bad
    if args.codepoints:
        t = time.time()
        sweep = codepoint_sweep(ours, refs)
        print(f"code points ({time.time() - t:.1f}s):")
        for name, r in sweep.items():
            print(f"  {name}: {r['differ']:,} of 1,112,062 differ {r['by_category']}; e.g. {r['examples'][:3]}")
        report["codepoints"] = sweep
    print(f"total {time.time() - t0:.1f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
