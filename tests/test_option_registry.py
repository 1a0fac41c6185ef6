"""The options are defined once (corpusflow.config.option) and everything is generated from them."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from corpusflow.config import specs
from pipelines import cli
from pipelines.options import BuildOptions, option_classes
from pipelines.stages import REGISTRY

# What manifest.json's "config" recorded before the options moved onto the config
# classes: users' scripts read it, so the set must not shrink.
MANIFEST_KEYS = {
    "decontaminate", "do_lower_case", "docs_format", "dupe_factor", "exact_dedup", "input",
    "input_encoding", "input_format", "line_dedup", "line_dedup_min_chars", "ltp_model",
    "mask_decision", "masked_lm_prob", "masking", "max_chars", "max_predictions_per_seq",
    "max_record_mb", "max_repeated_line_ratio", "max_seq_length", "min_chars", "min_cjk_ratio",
    "min_quality", "minhash_threshold", "near_dedup", "ngram", "ngram_dist", "nsp_window",
    "num_doc_shards", "num_shards", "output", "pair_task", "pii", "quality_model", "random_seed",
    "segmenter", "short_seq_prob", "stop_after", "t2s", "tfrecord_gzip", "token_boundary",
    "user_dict", "vocab_file"}


class _Ctx:
    """What Stage.config_json reads of a Ctx."""

    def __init__(self, b):
        self.b = b

    def config(self, cls):
        return cls.from_options(self.b)


def _options(*argv: str) -> BuildOptions:
    return PipelineOptions(["--input", "x/*", "--output", "/tmp/o", *argv]).view_as(BuildOptions)


def test_every_option_is_defined_once_with_help():
    names = [name for cls in option_classes() for name, _d, _s in specs(cls)]
    assert len(names) == len(set(names))
    assert all(s.help for cls in option_classes() for _n, _d, s in specs(cls))
    flags = {s for a in cli.corpusflow_parser()._actions for s in a.option_strings}
    assert {f"--{n}" for n in names} <= flags


def test_manifest_config_keys_and_stage_hash_keys():
    b = _options()
    config: dict = {}
    for cls in option_classes():
        config.update(cls.from_options(b).manifest_json())
    assert set(config) == MANIFEST_KEYS
    hashed = {k for stage in REGISTRY for cls in stage.configs
              for k in cls.from_options(b).to_json()}
    # Each hashed option shapes one stage; run-level options and paths whose
    # content is hashed instead (vocab, LTP model) shape none by name.
    owners = {k: [s.name for s in REGISTRY if k in s.config_json(_Ctx(b))] for k in hashed}
    assert all(len(v) == 1 for v in owners.values()), owners
    assert hashed == MANIFEST_KEYS - {"input", "output", "ltp_model", "stop_after", "vocab_file"}


def test_a_value_reaches_its_config_by_flag_name():
    from corpusflow.pretrain.instances import InstanceConfig
    cfg = InstanceConfig.from_options(_options("--random_seed", "7", "--mask_decision",
                                               "per_token", "--masking", "ngram"))
    assert (cfg.random_seed, cfg.mask_decision, cfg.masking) == (7, "per_token", "ngram")
    assert cfg.mask_config().masking == "ngram"
