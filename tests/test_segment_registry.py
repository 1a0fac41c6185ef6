"""make_segmenter: names, options, lazy imports, user dictionaries for both backends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from corpusflow.segment.base import check_spans
from corpusflow.segment.registry import SEGMENTERS, make_segmenter, segmenter_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "zhwiki_jieba_seg.txt")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_jieba = pytest.mark.skipif(
    not (_has("jieba") and os.path.exists(os.path.join(ROOT, "corpusflow", "segment",
                                                       "jieba_backend.py"))),
    reason="jieba or its backend is not installed")
needs_ltp = pytest.mark.skipif(not _has("ltp_extension"), reason="ltp-extension not installed")


def test_names():
    assert SEGMENTERS == ("jieba", "ltp", "jieba_rs")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown segmenter 'thulac'; choose one of: jieba, ltp, jieba_rs"):
        make_segmenter("thulac")


def test_importing_registry_loads_no_backend():
    code = ("import sys, corpusflow.segment.registry; "
            "loaded = [m for m in ('jieba', 'ltp_extension', 'ltp', 'torch') if m in sys.modules]; "
            "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@needs_ltp
def test_ltp_needs_model_dir():
    with pytest.raises(ValueError, match="--ltp_model DIR"):
        make_segmenter("ltp")
    with pytest.raises(ValueError, match="--ltp_model DIR"):
        make_segmenter("ltp", ltp_model=None, user_dict=None)


@needs_ltp
def test_ltp_options_and_alias(tmp_path):
    from corpusflow.segment.ltp_backend import LTPSegmenter

    seg = make_segmenter("ltp", ltp_model=str(tmp_path), batch_size=8, device="cpu",
                         user_dict=None)
    assert isinstance(seg, LTPSegmenter)
    assert (seg.model_dir, seg.batch_size, seg.device, seg.user_dict) == (str(tmp_path), 8, "cpu", None)
    assert make_segmenter("ltp", model_dir="x").model_dir == "x"
    with pytest.raises(ValueError, match="not both"):
        make_segmenter("ltp", model_dir="x", ltp_model="y")
    with pytest.raises(ValueError, match="does not take option.*hmm"):
        make_segmenter("ltp", model_dir="x", hmm=False)
    assert "ltp_model" in segmenter_options("ltp") and "model_dir" in segmenter_options("ltp")
    # Code named by a model's config.json is refused unless asked for.
    assert "trust_model_code" in segmenter_options("ltp") and seg.trust_model_code is False
    assert make_segmenter("ltp", model_dir="x", trust_model_code=True).trust_model_code is True
    # Construction is cheap and checks nothing; validate() reports the bad path.
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        seg.validate()


@needs_ltp
def test_ltp_user_dict_through_registry(tmp_path):
    from corpusflow.segment.train import read_segmented, train_perceptron

    model = train_perceptron(read_segmented(DATA), str(tmp_path / "m"), epochs=2, shuffle=False)
    ud = tmp_path / "user.txt"
    ud.write_text("符号语言研究\n", encoding="utf-8")
    s = "数学是利用符号语言研究数量的学科。"
    plain = make_segmenter("ltp", ltp_model=model).segment(s)
    with_dict = make_segmenter("ltp", ltp_model=model, user_dict=str(ud)).segment(s)
    assert check_spans(s, plain) and check_spans(s, with_dict)
    assert (5, 11) in with_dict and (5, 11) not in plain


@needs_jieba
def test_jieba_by_name():
    from corpusflow.segment.jieba_backend import JiebaSegmenter

    seg = make_segmenter("jieba", user_dict=None, ltp_model=None)
    assert isinstance(seg, JiebaSegmenter)
    s = "我爱北京天安门。"
    assert check_spans(s, seg.segment(s))
    assert make_segmenter("jieba", hmm=False).hmm is False
    with pytest.raises(ValueError, match="does not take option.*ltp_model"):
        make_segmenter("jieba", ltp_model="dir")


@needs_jieba
def test_jieba_user_dict_through_registry(tmp_path):
    ud = tmp_path / "user.txt"
    ud.write_text("符号语言研究 100 n\n", encoding="utf-8")
    s = "数学是利用符号语言研究数量的学科。"
    plain = make_segmenter("jieba").segment(s)
    with_dict = make_segmenter("jieba", user_dict=str(ud)).segment(s)
    assert check_spans(s, with_dict)
    assert (5, 11) in with_dict and (5, 11) not in plain


@needs_ltp
def test_build_passes_trust_model_code_to_ltp():
    """pipelines.build hands --trust_model_code to the LTP segmenter (driver and workers)."""
    from corpusflow.segment.registry import SegmentConfig, constructor_options
    from pipelines.options import BuildOptions

    def build_segmenter_options(b):
        return constructor_options(SegmentConfig.from_options(b))

    base = ["--input", "x", "--output", "y", "--segmenter", "ltp", "--ltp_model", "m"]
    for extra, want in (([], False), (["--trust_model_code"], True), (["--trust_model_code", "false"], False)):
        opts = build_segmenter_options(BuildOptions(base + extra))
        assert opts["trust_model_code"] is want
        assert make_segmenter("ltp", **opts).trust_model_code is want
