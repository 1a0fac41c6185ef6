"""Command-line options of ``python -m pipelines.build`` (a Beam ``PipelineOptions`` subclass).

Every option has a one-line help text and its default is shown by ``--help``
(``pipelines.cli``); ranges are checked by ``pipelines.cli.validate`` before
any stage starts.
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from corpusflow.tokenize import DEFAULT_VOCAB

STAGE_NAMES = ("clean", "dedup", "segment", "instances", "tfrecords")


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


def _flag(group, name: str, default: bool, help: str) -> None:
    """A boolean option usable bare (``--resume``) or with a value (``--resume false``)."""
    group.add_argument(name, type=str2bool, nargs="?", const=True, default=default, help=help,
                       metavar="true|false")


class BuildOptions(PipelineOptions):
    """Every corpusflow flag; Beam's own flags (``--runner`` ...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("corpusflow: input and output")
        g.add_argument("--input", action="append", default=None, metavar="GLOB",
                       help="Input file glob (local or gs://), quoted so the shell does not expand "
                            "it; repeat for several. Required.")
        g.add_argument("--output", default=None, metavar="DIR",
                       help="Output directory (local or gs://), owned by one run. Required.")
        g.add_argument("--input_format", default="auto",
                       choices=["auto", "wiki_json", "wiki_doc", "baike_json", "news_json",
                                "bert_text", "text_lines"],
                       help="Format of every input file; auto detects it per file.")
        g.add_argument("--input_encoding", default="auto", choices=["utf-8", "gb18030", "auto"],
                       help="Text encoding; auto tells UTF-8 from GB18030 per file.")
        g.add_argument("--max_record_mb", type=float, default=16.0,
                       help="Records (lines) larger than this are rejected, never loaded.")
        g.add_argument("--docs_format", default="jsonl", choices=["jsonl", "parquet"],
                       help="Format of the deduplicated documents in DIR/docs/.")
        g.add_argument("--num_doc_shards", type=int, default=16,
                       help="Shards of the cleaned and deduplicated documents (1..100000).")
        g.add_argument("--stop_after", default=None, choices=list(STAGE_NAMES),
                       help="Stop after this stage (default: tfrecords, or dedup with "
                            "--vocab_file none).")
        _flag(g, "--resume", False, "Skip stages whose finished output still matches the "
                                    "current config, inputs and checksums.")
        _flag(g, "--overwrite", False, "Clear an output directory that holds files of a "
                                       "different run (refused otherwise).")
        _flag(g, "--allow_empty", False, "Exit 0 even when the run keeps no document "
                                         "(exit 1 otherwise).")
        _flag(g, "--progress", True, "Print stage progress to stderr.")

        c = parser.add_argument_group("corpusflow: cleaning (stage clean)")
        c.add_argument("--t2s", type=str2bool, default=True, metavar="true|false",
                       help="Convert Traditional to Simplified Chinese (OpenCC t2s).")
        c.add_argument("--min_chars", type=int, default=20,
                       help="Documents with fewer non-space characters are filtered.")
        c.add_argument("--max_chars", type=int, default=1_000_000,
                       help="Documents with more characters are filtered.")
        c.add_argument("--min_cjk_ratio", type=float, default=0.3,
                       help="Documents with a smaller share of CJK characters are filtered (0..1).")
        c.add_argument("--max_repeated_line_ratio", type=float, default=0.3,
                       help="Documents with a larger share of repeated lines are filtered (0..1).")
        c.add_argument("--pii", default="redact", choices=["redact", "tag", "drop_doc", "off"],
                       help="Personal data (IDs, phones, e-mails, cards...): replace with typed "
                            "placeholders, tag spans in meta.pii, drop the document, or leave it.")
        c.add_argument("--quality_model", default=None, metavar="DIR",
                       help="Quality model directory (python -m corpusflow.quality.train): adds "
                            "meta.quality.score.")
        c.add_argument("--min_quality", type=float, default=None,
                       help="Documents whose quality score is below this are filtered as low_quality "
                            "(0..1; needs --quality_model).")

        d = parser.add_argument_group("corpusflow: deduplication (stage dedup)")
        d.add_argument("--exact_dedup", type=str2bool, default=True, metavar="true|false",
                       help="Drop documents whose text equals another's (smallest id kept).")
        d.add_argument("--line_dedup", type=str2bool, default=True, metavar="true|false",
                       help="C4-style: a repeated line is kept in one document only.")
        d.add_argument("--line_dedup_min_chars", type=int, default=10,
                       help="Lines shorter than this are never line-deduplicated.")
        d.add_argument("--near_dedup", type=str2bool, default=False, metavar="true|false",
                       help="MinHash near-duplicate removal of whole documents.")
        d.add_argument("--minhash_threshold", type=float, default=None,
                       help="Jaccard threshold of near-duplicates (0..1; default: the "
                            "detector's own, 0.8).")
        d.add_argument("--decontaminate", action="append", default=None,
                       help="Evaluation-set glob whose n-grams must not leak into training data; "
                            "repeat for several.")

        s = parser.add_argument_group("corpusflow: word segmentation (stage segment)")
        s.add_argument("--segmenter", default="jieba",
                       help="jieba (exact jieba 0.42.1), jieba_rs (rjieba) or ltp (needs "
                            "--ltp_model).")
        s.add_argument("--ltp_model", default=None,
                       help="LTP model directory (perceptron or neural), local or gs://.")
        s.add_argument("--ltp_device", default="auto",
                       help="neural LTP models: cpu, cuda, cuda:N, or auto (a GPU when torch sees "
                            "one); perceptron models ignore it.")
        _flag(s, "--trust_model_code", False,
              "Let a neural LTP model's config.json name classes outside LTP's own model "
              "classes (loading it then runs that code).")
        s.add_argument("--user_dict", default=None,
                       help="jieba-format user dictionary added to the segmenter.")
        s.add_argument("--segment_batch_size", type=int, default=256,
                       help="Sentences per segmenter call (LTP batch_predict / neural forward pass).")
        s.add_argument("--segment_block_sentences", type=int, default=4096,
                       help="Documents are segmented in blocks of about this many sentences "
                            "(keeps the model cache-warm; output does not depend on it).")

        t = parser.add_argument_group("corpusflow: pretraining instances (stages instances, "
                                      "tfrecords)")
        t.add_argument("--vocab_file", default=DEFAULT_VOCAB,
                       help="WordPiece vocab.txt (default: the bundled standard Chinese BERT vocab, "
                            "21,128 tokens); 'none' stops after dedup.")
        t.add_argument("--do_lower_case", type=str2bool, default=True, metavar="true|false",
                       help="Lower-case and strip accents before WordPiece (as BERT-Chinese).")
        t.add_argument("--max_seq_length", type=int, default=128,
                       help="Tokens per instance, [CLS] and [SEP]s included (8..512).")
        _flag(t, "--allow_long_sequences", False, "Allow --max_seq_length above 512.")
        t.add_argument("--max_predictions_per_seq", type=int, default=20,
                       help="Most masked positions per instance (1..max_seq_length).")
        t.add_argument("--masked_lm_prob", type=float, default=0.15,
                       help="Share of tokens masked (0 < p <= 1).")
        t.add_argument("--short_seq_prob", type=float, default=0.1,
                       help="Share of chunks packed to a random shorter length (0..1).")
        t.add_argument("--dupe_factor", type=int, default=2,
                       help="Passes over the corpus, each with different masks (1..1000).")
        t.add_argument("--masking", default="wwm", choices=["token", "wwm", "ngram"],
                       help="Mask single tokens, whole words, or n-grams of whole words.")
        t.add_argument("--ngram", type=int, default=3,
                       help="Longest n-gram (in words) of --masking ngram (1..10).")
        t.add_argument("--ngram_dist", default="albert", choices=["albert", "geometric"],
                       help="n-gram length distribution: ALBERT's 1/n or SpanBERT's geometric.")
        t.add_argument("--mask_decision", default="per_word", choices=["per_word", "per_token"],
                       help="80/10/10 [MASK]/random/keep drawn once per word or per token.")
        t.add_argument("--pair_task", default="sop", choices=["sop", "nsp", "none"],
                       help="Sentence-order (ALBERT), next-sentence (BERT) or no pair task.")
        t.add_argument("--nsp_window", type=int, default=64,
                       help="NSP negatives come from the last N documents of the same docs shard.")
        t.add_argument("--random_seed", type=int, default=12345,
                       help="Seed of every random draw (with the document id and the pass).")
        t.add_argument("--num_shards", type=int, default=8,
                       help="TFRecord shards written (1..100000).")
        _flag(t, "--token_boundary", False, "Write ALBERT's token_boundary feature.")
        _flag(t, "--tfrecord_gzip", False, "GZIP-compress the TFRecord shards.")
        _flag(t, "--keep_instance_runs", False,
              "Keep the instances stage's sorted runs (about the size of the TFRecords) so a "
              "changed --num_shards or --tfrecord_gzip with --resume only rewrites the shards.")

        k = parser.add_argument_group("corpusflow: Dask runner")
        k.add_argument("--dask_address", default=None, metavar="tcp://HOST:PORT",
                       help="Scheduler of an existing Dask cluster (workers must share the paths).")
        k.add_argument("--dask_local_workers", type=int, default=0, metavar="N",
                       help="Start a local cluster of N one-thread worker processes for the run "
                            "(0: one per CPU, unless --dask_address).")
        k.add_argument("--dask_partitions", type=int, default=0, metavar="N",
                       help="Partitions of every shuffle (0: max(4 x worker threads, input "
                            "bytes / 16 MiB)).")
