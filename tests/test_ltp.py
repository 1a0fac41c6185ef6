"""LTP segmenter: perceptron models trained here, a random-weight neural model,
``ltp.LTP(dir)`` compatibility, bad model paths and fallbacks. Offline."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from typing import Optional

import pytest

pytest.importorskip("ltp_extension")

from corpusflow.segment.base import check_spans  # noqa: E402
from corpusflow.segment.ltp_backend import (  # noqa: E402
    LTPSegmenter,
    UntrustedModelCode,
    copy_model_dir,
    hash_model_dir,
)
from corpusflow.segment.registry import make_segmenter  # noqa: E402
from corpusflow.segment.train import (  # noqa: E402
    main as train_main,
    read_segmented,
    train_perceptron,
    write_random_neural_model,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "zhwiki_jieba_seg.txt")

# Known sentences, repeated in the training data so the small model learns them.
KNOWN = [
    ["我", "爱", "北京", "天安门", "。"],
    ["数学", "是", "一门", "学科", "。"],
    ["他", "喜欢", "研究", "哲学", "和", "历史", "。"],
]


def spans_of(words: list[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w)
    return out


def neural_stack_or_skip() -> None:
    """Skip unless torch, transformers<5 and ltp are importable."""
    # As the backend does: keep transformers from importing TensorFlow (~14 s).
    os.environ.setdefault("USE_TF", "0")
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if int(transformers.__version__.split(".")[0]) >= 5:
        pytest.skip("LTP 4.2 needs transformers<5")
    pytest.importorskip("ltp")


@pytest.fixture(scope="module")
def train_sents() -> list[list[str]]:
    return read_segmented(DATA) + KNOWN * 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, train_sents) -> str:
    out = str(tmp_path_factory.mktemp("ltp") / "model")
    # shuffle off: the same model every run.
    return train_perceptron(train_sents, out, epochs=5, shuffle=False)


@pytest.fixture(scope="module")
def seg(model_dir) -> LTPSegmenter:
    s = LTPSegmenter(model_dir)
    s.validate()
    s.setup()
    return s


# -- perceptron -------------------------------------------------------------


def test_model_dir_layout(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f) == {"nerual": False, "tasks": {"cws": "cws_model.bin"}}
    assert os.path.getsize(os.path.join(model_dir, "cws_model.bin")) > 0


def test_known_sentences(seg):
    sentences = ["".join(w) for w in KNOWN]
    assert seg.segment_batch(sentences) == [spans_of(w) for w in KNOWN]
    assert seg.fallbacks == 0


def test_spans_cover_every_sentence(seg, train_sents):
    odd = ["", " ", "我 爱\t北京\u3000天安门 ", "😀中国人民🇨🇳", "a\x00b中国", "e\u0301中国",
           "Hello world 123.45 中国", "\n\n中国\r", "ＡＢＣ１２３中国"]
    sentences = ["".join(w) for w in train_sents[:200]] + odd
    before = seg.fallbacks
    out = seg.segment_batch(sentences)
    assert len(out) == len(sentences)
    for s, spans in zip(sentences, out):
        assert check_spans(s, spans), (s, spans)
    assert seg.fallbacks == before


def test_training_sentences_mostly_reproduced(seg, train_sents):
    gold = train_sents[:300]
    pred = seg.segment_batch(["".join(w) for w in gold])
    same = sum(p == spans_of(g) for p, g in zip(pred, gold))
    assert same / len(gold) > 0.8


def test_whitespace_is_its_own_span(seg):
    s = "我爱北京天安门。  数学是一门学科。"
    spans = seg.segment(s)
    assert check_spans(s, spans)
    assert (8, 10) in spans
    assert all(s[a:b].strip() == s[a:b] or not s[a:b].strip() for a, b in spans)


def test_repeated_sentences_segmented_once(model_dir):
    s = LTPSegmenter(model_dir)
    s.setup()
    seen: list[str] = []
    real = s._predict

    def spy(pieces):
        seen.extend(pieces)
        return real(pieces)

    s._predict = spy
    out = s.segment_batch(["我爱北京天安门。", "数学是一门学科。", "我爱北京天安门。"])
    assert seen == ["我爱北京天安门。", "数学是一门学科。"]
    assert out[0] == out[2] and out[0] is not out[2]


def test_batches_smaller_than_input(model_dir, seg):
    sentences = ["".join(w) for w in read_segmented(DATA)[:50]]
    small = LTPSegmenter(model_dir, batch_size=7)
    assert small.segment_batch(sentences) == seg.segment_batch(sentences)


def test_too_long_sentence_falls_back_counted(model_dir):
    s = LTPSegmenter(model_dir, max_chars=20)
    long = "数学是利用符号语言研究数量结构变化以及空间等概念的一门学科。"
    out = s.segment_batch([long, "我爱北京天安门。", long])
    assert out[0] == out[2] == [(i, i + 1) for i in range(len(long))]
    assert out[1] == spans_of(KNOWN[0])
    assert s.fallbacks == 2


def test_unencodable_sentence_falls_back_alone(model_dir):
    # A lone surrogate cannot cross into Rust; the rest of the batch is unaffected.
    s = LTPSegmenter(model_dir)
    bad = "\ud800数学是一门学科。"
    out = s.segment_batch(["我爱北京天安门。", bad, "数学是一门学科。"])
    assert out[1] == [(i, i + 1) for i in range(len(bad))]
    assert out[0] == spans_of(KNOWN[0]) and out[2] == spans_of(KNOWN[1])
    assert s.fallbacks == 1


def test_user_dict(model_dir, tmp_path):
    ud = tmp_path / "user.txt"
    ud.write_text("北京天安门 10 ns\n一门学科\n", encoding="utf-8")
    s = LTPSegmenter(model_dir, user_dict=str(ud))
    s.validate()
    assert s.segment("我爱北京天安门。") == [(0, 1), (1, 2), (2, 7), (7, 8)]
    assert s.segment("数学是一门学科。") == [(0, 2), (2, 3), (3, 7), (7, 8)]
    plain = LTPSegmenter(model_dir)
    assert s.identity()["model_hash"] != plain.identity()["model_hash"]


def test_identity(model_dir, tmp_path):
    ident = LTPSegmenter(model_dir).identity()
    assert ident["name"] == "ltp"
    assert ident["version"].startswith("ltp-extension==0.")
    assert ident["model_hash"] == hash_model_dir(model_dir) == LTPSegmenter(model_dir).identity()["model_hash"]
    copy = tmp_path / "copy"
    copy_model_dir(model_dir, str(copy))  # the same code copies gs:// directories
    assert hash_model_dir(str(copy)) == ident["model_hash"]
    (copy / "extra.txt").write_text("x")
    assert hash_model_dir(str(copy)) != ident["model_hash"]


def test_pickle_drops_loaded_model(seg):
    clone = pickle.loads(pickle.dumps(seg))
    assert clone._model is None
    assert clone.segment("我爱北京天安门。") == spans_of(KNOWN[0])


def test_perceptron_path_needs_no_torch(model_dir):
    code = ("import sys; from corpusflow.segment.ltp_backend import LTPSegmenter; "
            "s = LTPSegmenter(sys.argv[1]); s.validate(); print(s.segment('我爱北京天安门。')); "
            "assert 'torch' not in sys.modules and 'ltp' not in sys.modules, 'torch/ltp imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, model_dir], capture_output=True, text=True,
                          cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[(0, 1), (1, 2), (2, 4), (4, 7), (7, 8)]" in proc.stdout


def test_ltp_package_loads_the_same_dir(model_dir, seg):
    neural_stack_or_skip()
    import ltp

    model = ltp.LTP(model_dir)
    sentences = ["".join(w) for w in read_segmented(DATA)[:100]] + ["".join(w) for w in KNOWN]
    words = model.pipeline(sentences, tasks=["cws"]).cws
    assert [spans_of(w) for w in words] == seg.segment_batch(sentences)


# -- bad model paths --------------------------------------------------------


def _err(path: str, **kw) -> str:
    with pytest.raises((FileNotFoundError, ValueError)) as e:
        LTPSegmenter(path, **kw).validate()
    return str(e.value)


def test_missing_dir(tmp_path):
    msg = _err(str(tmp_path / "nope"))
    assert "does not exist" in msg and "nope" in msg


def test_missing_config(tmp_path):
    assert "has no config.json" in _err(str(tmp_path))


def test_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{nerual: false")
    assert "config.json" in (msg := _err(str(tmp_path))) and "is not valid JSON" in msg


def test_config_without_nerual_key(tmp_path):
    (tmp_path / "config.json").write_text('{"tasks": {"cws": "cws_model.bin"}}')
    assert 'boolean "nerual" key' in _err(str(tmp_path))


def test_config_without_cws_task(tmp_path):
    (tmp_path / "config.json").write_text('{"nerual": false, "tasks": {"pos": "pos.bin"}}')
    assert "no word segmentation model" in _err(str(tmp_path))


def test_missing_cws_file(tmp_path):
    (tmp_path / "config.json").write_text('{"nerual": false, "tasks": {"cws": "cws_model.bin"}}')
    msg = _err(str(tmp_path))
    assert "'cws_model.bin'" in msg and "does not exist" in msg


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cws_file(model_dir, tmp_path, damage):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    f = bad / "cws_model.bin"
    data = f.read_bytes()
    # A truncated file makes ltp_extension abort the process (Rust panic in a
    # loader thread); validate() must survive it and say what is wrong.
    f.write_bytes(data[:1000] if damage == "truncate" else b"not a model" * 100)
    msg = _err(str(bad))
    assert "is corrupt or not an LTP perceptron model" in msg and "cws_model.bin" in msg


def test_missing_user_dict(model_dir, tmp_path):
    msg = _err(model_dir, user_dict=str(tmp_path / "words.txt"))
    assert "user dictionary" in msg and "does not exist" in msg


def test_neural_dir_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"nerual": true, "model": {}, "vocabs": {"cws": ["I-W", "B-W"]}}')
    assert "has no pytorch_model.bin" in _err(str(tmp_path))


def _fake_neural_dir(path) -> str:
    (path / "config.json").write_text(
        '{"nerual": true, "model": {}, "vocabs": {"cws": ["I-W", "B-W"]}}')
    (path / "pytorch_model.bin").write_bytes(b"")
    return str(path)


def test_neural_without_packages_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ltp", None)  # as if ltp were not installed
    with pytest.raises(ImportError, match=r"pip install torch==2.13.0 && pip install ltp==4.2.14"):
        LTPSegmenter(_fake_neural_dir(tmp_path)).validate()


def test_neural_with_transformers_5_is_refused(tmp_path, monkeypatch):
    import corpusflow.segment.ltp_backend as lb

    real = lb._package_version
    monkeypatch.setattr(lb, "_package_version",
                        lambda name: "5.0.0" if name == "transformers" else real(name))
    with pytest.raises(ImportError, match="found transformers 5.0.0"):
        LTPSegmenter(_fake_neural_dir(tmp_path)).validate()


# -- train CLI ----------------------------------------------------------------


def test_train_cli(tmp_path, capsys):
    out = tmp_path / "cli_model"
    assert train_main(["--train", DATA, "--output", str(out), "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    assert "held-out" in printed and "F1" in printed
    info = json.loads((out / "train_info.json").read_text())
    assert info["eval"]["sentences"] == 40 and info["train_sentences"] == 360
    # jieba agreement of a 360-sentence model: low but far from random.
    assert info["eval"]["f1"] > 0.7
    seg = LTPSegmenter(str(out))
    seg.validate()
    assert check_spans("数学是一门学科。", seg.segment("数学是一门学科。"))
    assert train_main(["--train", DATA, "--output", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert train_main(["--train", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o")]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_train_cli_with_eval_file(tmp_path, capsys):
    sents = read_segmented(DATA)
    tr, ev = tmp_path / "tr.txt", tmp_path / "ev.txt"
    tr.write_text("\n".join(" ".join(w) for w in sents[:300]) + "\n", encoding="utf-8")
    ev.write_text("\n\n".join(" ".join(w) for w in sents[300:]) + "\n", encoding="utf-8")
    out = tmp_path / "m"
    assert train_main(["--train", str(tr), "--eval", str(ev), "--output", str(out),
                       "--epochs", "2", "--algorithm", "AP"]) == 0
    info = json.loads((out / "train_info.json").read_text())
    assert info["eval"]["sentences"] == 100 and info["params"]["algorithm"] == "AP"


# -- neural (random weights) ---------------------------------------------------


@pytest.fixture(scope="module")
def neural_dirs(tmp_path_factory, train_sents):
    neural_stack_or_skip()
    chars = set("".join("".join(w) for w in train_sents)) | set("Helloworld0123456789")
    base = tmp_path_factory.mktemp("neural")
    split = write_random_neural_model(str(base / "split"), chars, always_split=True)
    rand = write_random_neural_model(str(base / "random"), chars, seed=1)
    return split, rand


def test_neural_tiny_runs_through_interface(neural_dirs):
    split_dir, rand_dir = neural_dirs
    seg = LTPSegmenter(split_dir, batch_size=4)
    seg.validate()
    sentences = ["我爱北京天安门。", "数学 是一门学科", "Hello world 中国", "我爱北京天安门。", "", "😀中国"]
    out = seg.segment_batch(sentences)
    for s, spans in zip(sentences, out):
        assert check_spans(s, spans), (s, spans)
    # The biased head starts a word at every token: one span per character
    # (whitespace runs are spans of their own; "Hello" is one token).
    assert out[0] == [(i, i + 1) for i in range(8)]
    assert out[1] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    assert seg.fallbacks == 0
    ident = seg.identity()
    assert ident["version"].startswith("ltp==4.") and ident["model_hash"] == hash_model_dir(split_dir)

    rnd = LTPSegmenter(rand_dir)
    long = "".join("".join(w) for w in read_segmented(DATA)[:40])  # > 500 chars: windowed
    assert len(long) > 1000
    out = rnd.segment_batch(sentences + [long])
    for s, spans in zip(sentences + [long], out):
        assert check_spans(s, spans)
    assert max(b - a for a, b in out[-1]) <= 500
    assert rnd.fallbacks == 0


def test_neural_tiny_loads_with_ltp_package(neural_dirs):
    import ltp

    model = ltp.LTP(neural_dirs[0])
    words = model.pipeline(["我爱北京天安门。"], tasks=["cws"]).cws
    assert words == [list("我爱北京天安门。")]


def test_neural_pickle_and_teardown(neural_dirs):
    seg = LTPSegmenter(neural_dirs[0])
    seg.setup()
    clone = pickle.loads(pickle.dumps(seg))
    assert clone._model is None
    assert clone.segment("中国") == [(0, 1), (1, 2)]
    seg.teardown()
    assert seg._model is None


def test_load_failure_is_not_a_fallback(model_dir, tmp_path):
    # Passed validation, then the model vanished (e.g. a worker without access):
    # the error must surface instead of every sentence becoming characters.
    gone = tmp_path / "gone"
    shutil.copytree(model_dir, gone)
    s = LTPSegmenter(str(gone))
    s.validate()
    shutil.rmtree(gone)
    with pytest.raises(FileNotFoundError):
        s.segment_batch(["我爱北京天安门。"])
    assert s.fallbacks == 0


# -- remote (gs://-style) model directories ------------------------------------


def _register_fake_remote_fs() -> str:
    """A Beam filesystem for ``cftest://<local path>``: exercises the code that
    reads gs:// model directories (match, open, exists) without a network."""
    from apache_beam.io.filesystem import FileMetadata, MatchResult
    from apache_beam.io.localfilesystem import LocalFileSystem

    global _FAKE_FS
    prefix = "cftest://"
    if _FAKE_FS is not None:  # Beam refuses two filesystems for one scheme
        return prefix

    def local(path: str) -> str:
        # Beam's inherited match() calls exists() again with the local path.
        return path[len(prefix):] if path.startswith(prefix) else path

    class FakeRemoteFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "cftest"

        def match(self, patterns, limits=None):
            results = super().match([local(p) for p in patterns], limits)
            return [MatchResult(p, [FileMetadata(prefix + m.path, m.size_in_bytes)
                                    for m in r.metadata_list])
                    for p, r in zip(patterns, results)]

        def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
            return super().open(local(path), mime_type, compression_type)

        def exists(self, path):
            return super().exists(local(path))

    _FAKE_FS = FakeRemoteFileSystem
    return prefix


_FAKE_FS = None


def test_remote_model_dir_is_copied_once_per_setup(model_dir, tmp_path):
    pytest.importorskip("apache_beam")
    from pipelines.beam_io import BEAM
    prefix = _register_fake_remote_fs()
    remote = prefix + model_dir
    with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
        LTPSegmenter(remote).validate()  # the core alone reads local files only
    seg = LTPSegmenter(remote, opener=BEAM)
    seg.validate()
    assert seg.identity()["model_hash"] == hash_model_dir(model_dir)
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    seg.setup()
    assert seg.segment("我爱北京天安门。") == spans_of(KNOWN[0])
    # The local copy is deleted once the model is in memory.
    assert not {d for d in set(os.listdir(tempfile.gettempdir())) - before
                if d.startswith("corpusflow-ltp-")}

    with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
        LTPSegmenter(prefix + str(tmp_path / "nope"), opener=BEAM).validate()
    (tmp_path / "noconf").mkdir()
    (tmp_path / "noconf" / "x.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        LTPSegmenter(prefix + str(tmp_path / "noconf"), opener=BEAM).validate()


# -- block word starts (the pipeline's fast path) ------------------------------


def test_block_word_starts_equal_span_starts(seg, train_sents):
    import numpy as np

    from corpusflow.clean.sentences import split_sentences
    from corpusflow.counters import null_inc
    from corpusflow.pretrain.instances import InstanceBuilder

    texts = ["".join(w) for w in train_sents]
    # Documents of 1-7 sentences from the training text, plus edge cases.
    docs = [texts[i:i + 1 + i % 7] for i in range(0, len(texts), 5)]
    docs += [split_sentences("我爱北京天安门。数学是一门学科。他喜欢研究哲学和历史。"),
             ["数学是一门学科。"] * 3, ["a"], ["我爱北京", "天安门"],
             # whitespace runs are words of their own, in both paths
             ["有 空格的句子。", "  前后都有空格\u3000 "], ["中文 English 混排 2024 年。"],
             [" "], ["我爱北京\t天安门。", "数学是一门学科。"]]
    declined = [["", "中文"], [], ["很长" * 20_000], ["正常的句子。", "很长" * 20_000]]
    got = seg.block_word_starts(docs + declined)
    assert got[len(docs):] == [None] * len(declined)
    for sentences, fast in zip(docs, got):
        assert fast is not None, sentences
        ref = InstanceBuilder.word_starts_from_spans(sentences, seg.segment_batch(sentences), null_inc)
        assert np.array_equal(np.unique(fast), np.unique(ref)), sentences
        assert fast[0] == 0 and fast[-1] == len("\n".join(sentences))
    assert seg.block_word_starts([]) == []


def test_block_word_starts_declines_with_user_dict(model_dir, tmp_path):
    d = tmp_path / "user.txt"
    d.write_text("天安门广场 10\n", encoding="utf-8")
    s = LTPSegmenter(model_dir, user_dict=str(d))
    s.validate()
    assert s.block_word_starts([["我爱北京天安门广场。"]]) == [None]


# -- code named by a model directory (trust_model_code) ---------------------------


def _code_dir(path, model: dict, extra: Optional[dict] = None) -> str:
    """A neural model directory whose config.json holds ``model`` (and ``extra``)."""
    os.makedirs(path, exist_ok=True)
    config = {"nerual": True, "model": model, "vocabs": {"cws": ["I-W", "B-W"]}, **(extra or {})}
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    with open(os.path.join(path, "pytorch_model.bin"), "wb"):
        pass
    return str(path)


def _refusal(path: str, **kw) -> str:
    with pytest.raises(UntrustedModelCode) as e:
        LTPSegmenter(path, **kw).validate()
    msg = str(e.value)
    assert "\n" not in msg and os.path.join(path, "config.json") in msg and "--trust_model_code" in msg
    return msg


def test_config_naming_outside_code_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "marker"
    top = _code_dir(tmp_path / "top", {"_ltp_target_": "os.system", "command": f"touch {marker}"})
    msg = _refusal(top)
    assert "config.model._ltp_target_ = 'os.system'" in msg
    # Nested anywhere, under either key, and through the registry (the pipeline's path).
    ltp_module = "ltp_core.models.ltp_model.LTPModule"
    nested = _code_dir(tmp_path / "nested", {
        "_ltp_target_": ltp_module, "heads": {"cws": {"_ltp_target_": "os.mkdir", "path": str(marker)}}})
    assert "config.model.heads.cws._ltp_target_ = 'os.mkdir'" in _refusal(nested)
    with pytest.raises(UntrustedModelCode, match="os.mkdir"):
        make_segmenter("ltp", ltp_model=nested).validate()
    hydra = _code_dir(tmp_path / "hydra", {"_ltp_target_": ltp_module},
                      {"vocabs": {"cws": ["I-W", "B-W"], "x": [{"_target_": "builtins.exec"}]}})
    assert "config.vocabs.x[0]._target_ = 'builtins.exec'" in _refusal(hydra)
    # LTP's own resolver reaches any callable: refused although it lives in ltp_core.models.
    resolver = _code_dir(tmp_path / "resolver", {
        "_ltp_target_": "ltp_core.models.utils.instantiate.importlib.import_module", "name": "antigravity"})
    assert "instantiate.importlib.import_module" in _refusal(resolver)
    remote = _code_dir(tmp_path / "remote", {"_ltp_target_": ltp_module, "backbone": {
        "_ltp_target_": "ltp_core.models.utils.load_transformers",
        "config": {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}}})
    assert "config.model.backbone.config.auto_map" in _refusal(remote)
    not_a_name = _code_dir(tmp_path / "odd", {"_ltp_target_": ["os", "system"]})
    assert "['os', 'system']" in _refusal(not_a_name)
    assert not marker.exists()
    # The segmenter's kind/identity read the same checked config.
    with pytest.raises(UntrustedModelCode):
        LTPSegmenter(top).kind


def test_trust_model_code_reaches_ltp(tmp_path, train_sents):
    """With the flag the named code really runs (the marker appears), so the
    refusal above is what kept it from running; a name that only resolves to
    an LTP module's import (torch.save) is refused at load time."""
    neural_stack_or_skip()
    import contextlib

    chars = set("".join("".join(w) for w in train_sents))
    real = write_random_neural_model(str(tmp_path / "real"), chars)
    with open(os.path.join(real, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    marker = tmp_path / "marker"
    config["model"]["heads"]["cws"] = {"_ltp_target_": "os.mkdir", "path": str(marker)}
    evil = str(tmp_path / "evil")
    shutil.copytree(real, evil)
    with open(os.path.join(evil, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    _refusal(evil)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # what LTP makes of a None head does not matter
        make_segmenter("ltp", ltp_model=evil, trust_model_code=True).validate()
    assert marker.is_dir()

    config["model"]["heads"]["cws"] = {"_ltp_target_": "ltp_core.models.ltp_model.torch.save",
                                       "obj": 1, "f": str(tmp_path / "saved")}
    with open(os.path.join(evil, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    msg = _refusal(evil)
    assert "which is torch.serialization.save, not one of LTP's own model classes" in msg
    assert not (tmp_path / "saved").exists()
    # LTP's real classes still load without the flag.
    seg = LTPSegmenter(real)
    seg.validate()
    assert all(check_spans(s, sp) for s, sp in zip(["我爱北京。"], seg.segment_batch(["我爱北京。"])))


def test_starts_for_block_one_call_either_path(model_dir, tmp_path):
    """The stage's one call: one batched call for a block whatever the path
    (block word starts, or spans when a user dictionary declines them), and
    the same words as the per-sentence reference."""
    import numpy as np

    from corpusflow.counters import CounterDict
    from corpusflow.segment.base import word_starts_from_spans

    docs = [["我爱北京天安门。", "数学是一门学科。"], ["有 空格的句子。"], ["a"],
            ["正常的句子。", "很长" * 20_000]]
    d = tmp_path / "user.txt"
    d.write_text("天安门广场 10\n", encoding="utf-8")
    for s, calls in ((LTPSegmenter(model_dir), 2), (LTPSegmenter(model_dir, user_dict=str(d)), 1)):
        counts = CounterDict()
        t = {"cpu_seconds": 0.0, "wall_seconds": 0.0, "calls": 0}
        got = s.starts_for_block(docs, counts, t)
        # With the model alone the over-long document is declined by the block
        # call and takes spans (a second call, one fallback sentence); with a
        # user dictionary every document takes spans in one call.
        assert t["calls"] == calls
        assert counts.as_dict() == {"segment:fallback:sentence": 1}
        for ss, a in zip(docs, got):
            ref = word_starts_from_spans(ss, s.segment_batch(ss))
            assert np.array_equal(np.unique(a), np.unique(ref)), ss
