"""Command-line options of ``python -m pipelines.build`` (a Beam ``PipelineOptions`` subclass)."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from corpusflow.tokenize import DEFAULT_VOCAB


def str2bool(value: str | bool) -> bool:
    """Parse ``true/false`` style flags (``--t2s false``)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class BuildOptions(PipelineOptions):
    """Every corpusflow flag; Beam's own flags (``--runner`` ...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("corpusflow: input and output")
        g.add_argument("--input", action="append", default=None,
                       help="Input file glob (local or gs://); repeat for several.")
        g.add_argument("--output", default=None, help="Output directory (local or gs://).")
        g.add_argument("--input_format", default="auto",
                       choices=["auto", "wiki_json", "wiki_doc", "baike_json", "news_json",
                                "bert_text", "text_lines"])
        g.add_argument("--input_encoding", default="auto", choices=["utf-8", "gb18030", "auto"])
        g.add_argument("--max_record_mb", type=float, default=16.0,
                       help="Records (lines) larger than this are rejected, never loaded.")
        g.add_argument("--docs_format", default="jsonl", choices=["jsonl", "parquet"])
        g.add_argument("--num_doc_shards", type=int, default=16)
        g.add_argument("--stop_after", default=None,
                       choices=["clean", "dedup", "segment", "instances", "tfrecords"],
                       help="Stop after this stage (default: tfrecords when --vocab_file is given, "
                            "else dedup).")
        g.add_argument("--resume", type=str2bool, nargs="?", const=True, default=False,
                       help="Skip stages whose finished output matches the current config.")
        g.add_argument("--progress", type=str2bool, nargs="?", const=True, default=True,
                       help="Print stage progress to stderr.")
        g.add_argument("--overwrite", type=str2bool, nargs="?", const=True, default=False,
                       help="Clear an output directory that holds files of a different run "
                            "(refused otherwise).")
        g.add_argument("--allow_empty", type=str2bool, nargs="?", const=True, default=False,
                       help="Exit 0 even when the run keeps no document (non-zero otherwise).")

        c = parser.add_argument_group("corpusflow: cleaning")
        c.add_argument("--t2s", type=str2bool, default=True, help="Traditional -> Simplified.")
        c.add_argument("--min_chars", type=int, default=20)
        c.add_argument("--max_chars", type=int, default=1_000_000)
        c.add_argument("--min_cjk_ratio", type=float, default=0.3)
        c.add_argument("--max_repeated_line_ratio", type=float, default=0.3)

        d = parser.add_argument_group("corpusflow: deduplication")
        d.add_argument("--exact_dedup", type=str2bool, default=True)
        d.add_argument("--line_dedup", type=str2bool, default=True,
                       help="C4-style: a repeated line is kept in one document only.")
        d.add_argument("--line_dedup_min_chars", type=int, default=10)
        d.add_argument("--near_dedup", type=str2bool, default=False)
        d.add_argument("--minhash_threshold", type=float, default=None)
        d.add_argument("--decontaminate", action="append", default=None,
                       help="Evaluation-set glob whose n-grams must not leak into training data.")

        t = parser.add_argument_group("corpusflow: pretraining instances")
        t.add_argument("--vocab_file", default=DEFAULT_VOCAB,
                       help="WordPiece vocab.txt (default: the bundled standard Chinese BERT vocab; "
                            "'none' stops after dedup).")
        t.add_argument("--do_lower_case", type=str2bool, default=True)
        t.add_argument("--max_seq_length", type=int, default=128)
        t.add_argument("--max_predictions_per_seq", type=int, default=20)
        t.add_argument("--masked_lm_prob", type=float, default=0.15)
        t.add_argument("--short_seq_prob", type=float, default=0.1)
        t.add_argument("--dupe_factor", type=int, default=2)
        t.add_argument("--masking", default="wwm", choices=["token", "wwm", "ngram"])
        t.add_argument("--ngram", type=int, default=3)
        t.add_argument("--ngram_dist", default="albert", choices=["albert", "geometric"])
        t.add_argument("--mask_decision", default="per_word", choices=["per_word", "per_token"])
        t.add_argument("--pair_task", default="sop", choices=["sop", "nsp", "none"])
        t.add_argument("--nsp_window", type=int, default=64,
                       help="NSP negatives come from the last N documents of the same docs shard.")
        t.add_argument("--random_seed", type=int, default=12345)
        t.add_argument("--num_shards", type=int, default=8)
        t.add_argument("--allow_long_sequences", type=str2bool, nargs="?", const=True,
                       default=False, help="Allow --max_seq_length above 512.")
        t.add_argument("--segmenter", default="jieba")
        t.add_argument("--ltp_model", default=None)
        t.add_argument("--ltp_device", default="auto",
                       help="neural LTP models: cpu, cuda, cuda:N, or auto (a GPU when torch sees "
                            "one); perceptron models ignore it")
        t.add_argument("--trust_model_code", type=str2bool, nargs="?", const=True, default=False,
                       help="Let a neural LTP model's config.json name classes outside LTP's own "
                            "model classes (loading it then runs that code).")
        t.add_argument("--user_dict", default=None)
        t.add_argument("--segment_batch_size", type=int, default=256,
                       help="sentences per segmenter call (LTP batch_predict / neural forward pass)")
        t.add_argument("--segment_block_sentences", type=int, default=4096,
                       help="documents are segmented in blocks of about this many sentences: "
                            "large blocks keep the segmenter's model warm in the CPU caches "
                            "between the instance-building work (output does not depend on it)")
        t.add_argument("--token_boundary", type=str2bool, nargs="?", const=True, default=False)
        t.add_argument("--tfrecord_gzip", type=str2bool, nargs="?", const=True, default=False)
        t.add_argument("--keep_instance_runs", type=str2bool, nargs="?", const=True, default=False,
                       help="keep the instances stage's sorted runs (about the size of the "
                            "TFRecords) after the write, so a changed --num_shards or "
                            "--tfrecord_gzip with --resume only rewrites the shards")
