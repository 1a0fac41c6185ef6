"""Instance quality of a finished build, read back from its TFRecords.

    .venv/bin/python bench/instance_quality.py OUT_DIR [--json]

Reads ``OUT_DIR/manifest.json`` (vocab, masking settings) and every shard under
``OUT_DIR/tfrecords`` and reports, over all instances:

* the pair label split and the share of single-segment instances (one [SEP]);
* instances with more than half of their real tokens (not [CLS]/[SEP])
  punctuation (``corpusflow.pretrain.punct``), with the original ids restored
  at masked positions;
* instances with no masked position, and instances whose number of
  predictions differs from ``masked_lm_budget(real tokens)``;
* when the build wrote ``token_boundary``: instances where it is not 1 at
  [CLS] and at every [SEP].

Also prints the single-segment handling and junk counters of the manifest.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpusflow.io.tfrecord import read_tfrecords  # noqa: E402
from corpusflow.pretrain.example import parse_example  # noqa: E402
from corpusflow.pretrain.masking import masked_lm_budget  # noqa: E402
from corpusflow.pretrain.punct import punct_ids  # noqa: E402
from corpusflow.tokenize.wordpiece import load_vocab  # noqa: E402


def measure(out_dir: str) -> dict:
    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["tfrecords"]
    vocab = load_vocab(t["vocab_file"])
    punct = punct_ids(vocab)
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    prob, max_pred = t["masked_lm_prob"], t["max_predictions_per_seq"]
    c: collections.Counter = collections.Counter()
    for path in sorted(glob.glob(str(out / "tfrecords" / "part-*"))):
        opener = gzip.open if t.get("compression") == "GZIP" else open
        with opener(path, "rb") as f:
            for rec in read_tfrecords(f):
                ex = parse_example(rec)
                n = sum(ex["input_mask"])
                ids = ex["input_ids"][:n]
                k = int(sum(ex["masked_lm_weights"]))
                orig = list(ids)
                for p, i in zip(ex["masked_lm_positions"][:k], ex["masked_lm_ids"][:k]):
                    orig[p] = i
                seps = [i for i, x in enumerate(ids) if x == sep_id]
                real = [x for i, x in enumerate(orig) if i and i not in seps]
                c["instances"] += 1
                c[f"label_{ex['next_sentence_labels'][0]}"] += 1
                c["single_segment"] += len(seps) == 1
                c["mostly_punct"] += 2 * sum(x in punct for x in real) > len(real)
                c["all_punct"] += all(x in punct for x in real)
                c["no_predictions"] += k == 0
                c["budget_mismatch"] += k != masked_lm_budget(len(real), prob, max_pred)
                tb = ex.get("token_boundary")
                if tb is not None:
                    c["token_boundary_checked"] += 1
                    c["token_boundary_bad"] += ids[0] != cls_id or any(tb[i] != 1 for i in [0] + seps)
    n = c["instances"] or 1
    counters = {k: v for k, v in manifest["counters"].items()
                if k.startswith(("pairs:", "clean:edited:", "instances:dropped", "mask:partial",
                                 "instances:no_masked", "instances:mask_under"))}
    return {"instances": c["instances"],
            "label_1_share": round(c["label_1"] / n, 4),
            "labels": {"0": c["label_0"], "1": c["label_1"]},
            "single_segment": c["single_segment"],
            "single_segment_share": round(c["single_segment"] / n, 4),
            "mostly_punct": c["mostly_punct"], "all_punct": c["all_punct"],
            "no_predictions": c["no_predictions"], "budget_mismatch": c["budget_mismatch"],
            "token_boundary_checked": c["token_boundary_checked"],
            "token_boundary_bad": c["token_boundary_bad"],
            "pair_task": t["pair_task"], "counters": counters}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.out_dir), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
