"""The core reaches files only through an ``Opener``: it never imports Beam (or the
pipelines), reads local files by default, and reads URLs through the pipelines'
Beam-backed opener with the same bytes."""

from __future__ import annotations

import ast
import gzip
import os
from pathlib import Path

import pytest

from corpusflow.io.opener import LOCAL, NotRegularFile, join
from corpusflow.io.readers import read_file

CORE = Path(__file__).resolve().parent.parent / "corpusflow"
FORBIDDEN = ("apache_beam", "pipelines")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module a source file imports, at any depth (function-local imports too),
    and every literal ``import_module``/``__import__`` argument."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            out.append((node.lineno, node.args[0].value))
    return out


def test_core_never_imports_beam_or_the_pipelines():
    sources = sorted(CORE.rglob("*.py"))
    assert len(sources) > 30  # the walk found the package
    bad = [f"{p.relative_to(CORE.parent)}:{line}: {name}"
           for p in sources
           for line, name in _imported_modules(ast.parse(p.read_text(encoding="utf-8")))
           if name.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_the_import_walk_sees_lazy_and_dynamic_imports():
    tree = ast.parse("def f():\n    from apache_beam.io.filesystems import FileSystems\n"
                     "import importlib\nimportlib.import_module('pipelines.beam_io')\n"
                     "from . import sibling\n")
    assert sorted(_imported_modules(tree)) == [(2, "apache_beam.io.filesystems"), (3, "importlib"),
                                               (4, "pipelines.beam_io")]


def test_local_opener(tmp_path):
    with LOCAL.open(str(tmp_path / "a.bin"), "wb") as f:
        f.write(b"\x00bytes")
    assert LOCAL.open(str(tmp_path / "a.bin")).read() == b"\x00bytes"
    assert LOCAL.exists(str(tmp_path / "a.bin")) and not LOCAL.exists(str(tmp_path))
    assert not LOCAL.exists("gs://bucket/a.bin")
    with pytest.raises(FileNotFoundError, match="gs://bucket/a.bin: a URL; this opener reads local files only"):
        LOCAL.open("gs://bucket/a.bin")
    with pytest.raises(NotRegularFile) as e:
        LOCAL.open(str(tmp_path))
    assert e.value.kind == "a directory"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile) as e:  # refused by stat: opening would block
        LOCAL.open(str(tmp_path / "fifo"))
    assert e.value.kind == "a FIFO"
    with pytest.raises(ValueError, match="mode"):
        LOCAL.open(str(tmp_path / "a.bin"), "r")


def test_local_list_files_is_relative_sorted_and_follows_links(tmp_path):
    d = tmp_path / "m"
    (d / "sub" / "deep").mkdir(parents=True)
    for rel in ("b.txt", "a.txt", "sub/z.bin", "sub/deep/x"):
        (d / rel).write_bytes(rel.encode())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y").write_bytes(b"y")
    os.symlink(tmp_path / "elsewhere", d / "linked")
    assert LOCAL.list_files(str(d)) == ["a.txt", "b.txt", "linked/y", "sub/deep/x", "sub/z.bin"]
    assert LOCAL.list_files(str(tmp_path / "missing")) == []
    assert join(str(d), "sub/deep/x") == str(d / "sub" / "deep" / "x")
    assert join("gs://b/m/", "sub/x") == "gs://b/m/sub/x"


# -- the pipelines' Beam-backed opener -------------------------------------------------

_PREFIX = "cfopener://"


def _fake_remote_fs() -> str:
    """A Beam filesystem for ``cfopener://<local path>``: what gs:// goes through,
    without a network (Beam keeps one filesystem class per scheme)."""
    from apache_beam.io.filesystem import FileMetadata, MatchResult
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.localfilesystem import LocalFileSystem

    try:
        FileSystems.get_filesystem(_PREFIX + "/")
        return _PREFIX
    except ValueError:
        pass

    def local(path: str) -> str:
        return path[len(_PREFIX):] if path.startswith(_PREFIX) else path

    class _OpenerTestFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "cfopener"

        def match(self, patterns, limits=None):
            results = super().match([local(p) for p in patterns], limits)
            return [MatchResult(p, [FileMetadata(_PREFIX + m.path, m.size_in_bytes) for m in r.metadata_list])
                    for p, r in zip(patterns, results)]

        def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
            return super().open(local(path), mime_type, compression_type)

        def create(self, path, mime_type="application/octet-stream", compression_type="auto"):
            return super().create(local(path), mime_type, compression_type)

        def exists(self, path):
            return super().exists(local(path))

    globals()["_KEEP_FS"] = _OpenerTestFileSystem  # Beam finds filesystems among live subclasses
    return _PREFIX


def test_beam_opener_reaches_urls_with_the_stored_bytes(tmp_path):
    from pipelines.beam_io import BEAM
    prefix = _fake_remote_fs()
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    packed = gzip.compress("第一行\n".encode())
    (d / "x.jsonl.gz").write_bytes(packed)
    (d / "sub" / "y").write_bytes(b"y")
    url = prefix + str(d)
    # Never decompressed by the opener: the core does that (and detects truncation).
    assert BEAM.open(url + "/x.jsonl.gz").read() == packed
    assert BEAM.exists(url + "/sub/y") and not BEAM.exists(url + "/nope")
    assert BEAM.list_files(url) == LOCAL.list_files(str(d)) == ["sub/y", "x.jsonl.gz"]
    with BEAM.open(url + "/w.bin", "wb") as f:
        f.write(b"written")
    assert (d / "w.bin").read_bytes() == b"written"
    # Local paths go exactly as with LOCAL (the FIFO/directory check included).
    assert BEAM.open(str(d / "sub" / "y")).read() == b"y"
    with pytest.raises(NotRegularFile):
        BEAM.open(str(d))
    import pickle
    assert pickle.loads(pickle.dumps(BEAM)).exists(url + "/sub/y")


def test_read_file_reads_a_url_through_the_beam_opener_only(tmp_path):
    from pipelines.beam_io import BEAM
    prefix = _fake_remote_fs()
    p = tmp_path / "news.jsonl.gz"
    p.write_bytes(gzip.compress(('{"news_id": 1, "title": "标题", "content": "正文内容。"}\n'
                                 '{"news_id": 2, "title": "又一个", "content": "更多正文。"}\n').encode()))
    local = list(read_file(str(p)))
    remote = list(read_file(prefix + str(p), opener=BEAM))
    assert [d.text for d in remote] == [d.text for d in local] == ["正文内容。", "更多正文。"]
    assert {d.meta["file"] for d in remote} == {prefix + str(p)}
    # The core alone does not reach URLs: one unreadable_file reject naming why.
    (rej,) = read_file(prefix + str(p))
    assert (rej.reason, rej.detail) == ("unreadable_file", f"FileNotFoundError: {prefix}{p}: a URL; this "
                                        "opener reads local files only")


def test_quality_model_from_a_url_needs_the_beam_opener(tmp_path):
    from corpusflow.quality import model as qm
    from pipelines.beam_io import BEAM
    prefix = _fake_remote_fs()
    d = str(tmp_path / "qm")
    qm.train(["北京是中国的首都。"] * 3, ["点击这里下载！！！"] * 3, bits=8, epochs=20).save(d)
    m = qm.load_model(prefix + d, BEAM)
    assert m.bits == 8 and (m.weights == qm.load_model(d).weights).all()
    assert qm.model_digest(prefix + d, BEAM) == qm.model_digest(d)
    with pytest.raises(qm.ModelError, match="no quality_model.json"):
        qm.load_model(prefix + d)


def test_the_segment_registry_hands_the_opener_to_backends_that_read_model_files():
    from corpusflow.segment.registry import SegmentConfig, make_from_config
    from pipelines.beam_io import BEAM
    ltp = make_from_config(SegmentConfig(segmenter="ltp", ltp_model="gs://bucket/model"), BEAM)
    assert ltp.opener is BEAM
    assert make_from_config(SegmentConfig(segmenter="ltp", ltp_model="m")).opener is LOCAL
    assert make_from_config(SegmentConfig(), BEAM).name == "jieba"  # jieba reads no model files
