"""CleanConfig and SegmentConfig: flags, defaults, bounds and messages, hashing,
and the registry's flag -> constructor mapping."""

from __future__ import annotations

import argparse
import pickle

import pytest

from corpusflow.clean.cleaner import CLEAN_OPTION_CLASSES, CleanConfig, Cleaner
from corpusflow.clean.filters import LengthConfig
from corpusflow.config import ConfigError, add_groups
from corpusflow.segment.registry import (SegmentConfig, check_in_driver, constructor_options,
                                         make_from_config)


def parser(classes) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_groups(p, classes)
    return p


def clean(argv: list[str]) -> CleanConfig:
    return CleanConfig.from_options(parser(CLEAN_OPTION_CLASSES).parse_args(argv))


def seg(argv: list[str]) -> SegmentConfig:
    return SegmentConfig.from_options(parser([SegmentConfig]).parse_args(argv))


def test_clean_defaults_and_hashed_keys():
    cfg = clean([])
    assert cfg == CleanConfig()
    keys = {}
    for cls in CLEAN_OPTION_CLASSES:
        keys.update(cls.from_options(parser(CLEAN_OPTION_CLASSES).parse_args([])).to_json())
    assert keys == {"t2s": True, "min_chars": 20, "max_chars": 1_000_000, "min_cjk_ratio": 0.3,
                    "max_repeated_line_ratio": 0.3, "pii": "redact", "quality_model": None,
                    "min_quality": None}
    assert cfg.to_json() == keys   # the whole config hashes the same keys
    assert cfg.manifest_json() == keys
    assert {c.GROUP for c in CLEAN_OPTION_CLASSES} == {"corpusflow: cleaning (stage clean)"}


def test_clean_from_options_builds_the_whole_config():
    cfg = clean(["--t2s", "false", "--max_chars", "30", "--min_cjk_ratio", "0.5",
                 "--pii", "off", "--quality_model", "M", "--min_quality", "0.25"])
    assert (cfg.t2s, cfg.pii, cfg.quality_model, cfg.min_quality) == (False, "off", "M", 0.25)
    assert cfg.threshold("max_chars") == 30 and cfg.threshold("min_cjk_ratio") == 0.5
    assert cfg.threshold("min_chars") == 20 and cfg.threshold("max_replacement_ratio") == 0.01
    assert cfg == CleanConfig.of(t2s=False, max_chars=30, min_cjk_ratio=0.5, pii="off",
                                 quality_model="M", min_quality=0.25)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(Cleaner(cfg))).config == cfg
    with pytest.raises(TypeError, match="no option.*nope"):
        CleanConfig.of(nope=1)


@pytest.mark.parametrize("values,message", [
    ({"min_chars": -1}, "--min_chars must be >= 0, got -1"),
    ({"max_chars": 0, "min_chars": 0}, r"--max_chars must be >= --min_chars \(0\) and >= 1, got 0"),
    ({"max_chars": 19}, r"--max_chars must be >= --min_chars \(20\) and >= 1, got 19"),
    ({"min_cjk_ratio": -0.1}, r"--min_cjk_ratio must be in \[0, 1\], got -0.1"),
    ({"max_repeated_line_ratio": 1.5}, r"--max_repeated_line_ratio must be in \[0, 1\], got 1.5"),
    ({"min_quality": 0.5}, "--min_quality needs --quality_model DIR"),
    ({"min_quality": 1.01, "quality_model": "M"}, r"--min_quality must be in \[0, 1\], got 1.01"),
    ({"pii": "hide"}, "--pii must be one of redact, tag, drop_doc, off, got 'hide'"),
])
def test_clean_bounds(values, message):
    with pytest.raises(ConfigError, match=message):
        CleanConfig.of(**values).validate()


@pytest.mark.parametrize("values", [
    {"min_chars": 0, "max_chars": 1}, {"min_chars": 5, "max_chars": 5},
    {"min_cjk_ratio": 0.0, "max_repeated_line_ratio": 1.0},
    {"min_quality": 0.0, "quality_model": "M"}, {"min_quality": 1.0, "quality_model": "M"},
])
def test_clean_bounds_are_inclusive(values):
    CleanConfig.of(**values).validate()


def test_filter_config_validates_alone():
    with pytest.raises(ConfigError, match="--max_chars"):
        LengthConfig(min_chars=10, max_chars=9).validate()


def test_segment_defaults_and_hashing():
    cfg = seg([])
    assert cfg == SegmentConfig()
    assert cfg.options() == {"segmenter": "jieba", "ltp_model": None, "ltp_device": "auto",
                             "trust_model_code": False, "user_dict": None,
                             "segment_batch_size": 256, "segment_block_sentences": 4096}
    # Batch and block sizes, the device and the model path do not shape the
    # words (the segmenter's identity covers the model).
    assert cfg.to_json() == {"segmenter": "jieba", "user_dict": None}
    assert seg(["--trust_model_code"]).trust_model_code is True
    assert seg(["--trust_model_code", "false"]).trust_model_code is False


@pytest.mark.parametrize("argv,message", [
    (["--segment_batch_size", "0"], "--segment_batch_size must be >= 1, got 0"),
    (["--segment_block_sentences", "0"], "--segment_block_sentences must be >= 1, got 0"),
    (["--ltp_device", "gpu"], "--ltp_device must be cpu, cuda, cuda:N or auto, got 'gpu'"),
    (["--ltp_device", "cuda:"], "--ltp_device must be cpu, cuda, cuda:N or auto, got 'cuda:'"),
    (["--ltp_device", "CPU"], "--ltp_device must be cpu, cuda, cuda:N or auto, got 'CPU'"),
    (["--ltp_device", ""], "--ltp_device must be cpu, cuda, cuda:N or auto, got ''"),
])
def test_segment_bounds(argv, message):
    with pytest.raises(ConfigError, match=message):
        seg(argv).validate()


def test_segment_valid_devices_and_names():
    for dev in ("cpu", "auto", "cuda", "cuda:0", "cuda:12"):
        seg(["--ltp_device", dev]).validate()
    with pytest.raises(SystemExit):   # argparse refuses a name the registry does not know
        parser([SegmentConfig]).parse_args(["--segmenter", "thulac"])
    with pytest.raises(ConfigError, match="--segmenter must be one of jieba, ltp, jieba_rs"):
        SegmentConfig(segmenter="thulac").validate()


def test_flag_mapping_lives_in_the_registry():
    assert constructor_options(SegmentConfig()) == {}
    assert constructor_options(SegmentConfig(user_dict="U", ltp_model="M")) == {"user_dict": "U"}
    assert constructor_options(SegmentConfig(user_dict="")) == {}
    ltp = SegmentConfig(segmenter="ltp", ltp_model="M", ltp_device="cuda:1", user_dict="U",
                        segment_batch_size=8)
    assert constructor_options(ltp) == {"model_dir": "M", "batch_size": 8, "device": "cuda:1",
                                        "trust_model_code": False, "user_dict": "U"}
    assert constructor_options(SegmentConfig(segmenter="ltp", ltp_model="M",
                                             trust_model_code=True))["trust_model_code"] is True


def test_make_from_config_and_driver_check(tmp_path):
    s = make_from_config(SegmentConfig())
    assert s.name == "jieba" and s.user_dict is None
    ident = check_in_driver(SegmentConfig())
    assert ident["name"] == "jieba" and len(ident["model_hash"]) == 64
    ud = tmp_path / "user.txt"
    ud.write_text("符号语言 5\n", encoding="utf-8")
    with_dict = check_in_driver(SegmentConfig(user_dict=str(ud)))
    assert with_dict["model_hash"] != ident["model_hash"]
    with pytest.raises(FileNotFoundError):
        check_in_driver(SegmentConfig(user_dict=str(tmp_path / "missing.txt")))


def test_ltp_without_model_is_one_clear_error():
    pytest.importorskip("ltp_extension")
    with pytest.raises(ValueError, match="segmenter 'ltp' needs a model directory: --ltp_model DIR"):
        make_from_config(SegmentConfig(segmenter="ltp"))
