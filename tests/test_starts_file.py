"""The segment stage's word-starts files and the instances stage's check of them."""

from __future__ import annotations

import gzip
import io
import json
import random

import numpy as np
import pytest

from corpusflow.document import stable_hash64
from corpusflow.pretrain.instances import InstanceConfig
from corpusflow.segment import starts_file
from tests.pipeline_util import ROOT

VOCAB = str(ROOT / "data" / "vocab" / "sample_vocab.txt")


def _file(records) -> io.BytesIO:
    f = io.BytesIO()
    starts_file.write_header(f)
    for id_hash, n, starts in records:
        f.write(starts_file.encode(id_hash, n, np.asarray(starts, dtype=np.int64)))
    f.seek(0)
    return f


def test_round_trip_keeps_every_start():
    rng = random.Random(7)
    records = []
    for n in (1, 2, 7, 8, 9, 15, 16, 17, 1000, 4097):
        starts = sorted(rng.sample(range(n), rng.randint(1, n)))
        # Duplicates and any order are the same set of starts (as prepare reads them).
        messy = starts + starts[: len(starts) // 2]
        rng.shuffle(messy)
        records.append((rng.getrandbits(64), n, starts, messy))
    f = _file([(h, n, messy) for h, n, _, messy in records])
    got = list(starts_file.read_records(f, "x"))
    assert [(h, n) for h, n, _ in got] == [(h, n) for h, n, _, _ in records]
    for (_, _, starts), (_, _, want, _) in zip(got, records):
        assert starts.tolist() == want
    # 12 header bytes and one bit per offset, rounded up to a byte.
    assert len(f.getvalue()) == len(starts_file.MAGIC) + sum(12 + (n + 7) // 8 for _, n, _, _ in records)


def test_not_a_starts_file_and_truncation_are_errors():
    with pytest.raises(starts_file.StartsFileError, match="not a corpusflow word-starts file"):
        list(starts_file.read_records(io.BytesIO(b"PAR1...."), "docs.parquet"))
    data = _file([(1, 100, [0, 5, 50])]).getvalue()
    for cut in (len(starts_file.MAGIC) + 5, len(data) - 1):
        with pytest.raises(starts_file.StartsFileError, match="record 0 is truncated"):
            list(starts_file.read_records(io.BytesIO(data[:cut]), "w"))


def _docs(tmp_path, texts):
    docs = [{"id": f"d{i}", "source": "test", "title": "", "text": t, "meta": {}}
            for i, t in enumerate(texts)]
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return docs, str(path)


def _instances(docs_path: str, words_path: str) -> list:
    from pipelines.stages.instances import BuildInstances
    fn = BuildInstances(InstanceConfig(vocab_file=VOCAB, max_seq_length=32,
                                       max_predictions_per_seq=5, nsp_window=4))
    fn.setup()
    fn.start_bundle()
    return list(fn.process((0, docs_path, words_path)))


def test_instances_refuse_word_starts_of_other_documents(tmp_path):
    from corpusflow.clean.sentences import split_sentences
    texts = ["今天天气很好。我们去公园散步吧。公园里有很多人在跑步。" * 3,
             "北京是中国的首都。上海是中国最大的城市。广州在南方。" * 3]
    docs, docs_path = _docs(tmp_path, texts)
    ok = []
    for d in docs:
        sents = split_sentences(d["text"])
        n = sum(map(len, sents)) + len(sents)
        ok.append((stable_hash64(d["id"]), n, list(range(n))))   # one word per character

    def words(records) -> str:
        p = tmp_path / f"w{random.Random(len(records)).random()}.words"
        p.write_bytes(_file(records).getvalue())
        return str(p)

    out = _instances(docs_path, words(ok))
    assert sum(1 for x in out if isinstance(x, tuple)) > 4
    with pytest.raises(starts_file.StartsFileError, match=r"at document 0 \('d0'\)"):
        _instances(docs_path, words([ok[1], ok[0]]))           # another document's record
    with pytest.raises(starts_file.StartsFileError, match="at document 1"):
        _instances(docs_path, words([ok[0], (ok[1][0], ok[1][1] + 1, [0])]))  # other length
    with pytest.raises(starts_file.StartsFileError, match="at document 1"):
        _instances(docs_path, words(ok[:1]))                     # too few records
    with pytest.raises(starts_file.StartsFileError, match="more records"):
        _instances(docs_path, words(ok + ok[:1]))
