"""InstanceBuilder: exact small case, prepare rules, determinism, properties on real text."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path

import pytest

from corpusflow.counters import CounterDict
from corpusflow.pretrain import masking
from corpusflow.pretrain.example import serialize_instance
from corpusflow.pretrain.instances import REJECT_TOO_SHORT, InstanceBuilder, InstanceConfig
from corpusflow.tokenize.wordpiece import FullTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The shared corpus beside the repo; CORPUSFLOW_CORPUS overrides (tests skip
# or fall back to a committed string when it is absent).
CORPUS = Path(os.environ.get("CORPUSFLOW_CORPUS",
                             Path(__file__).resolve().parents[2] / "shared" / "corpus"))
SENTS = ["我爱北京天安门。", "天安门上太阳升。", "伟大领袖毛主席，", "指引我们向前进。"]
WORDS = [["我", "爱", "北京", "天安门", "。"], ["天安门", "上", "太阳", "升", "。"],
         ["伟大", "领袖", "毛主席", "，"], ["指引", "我们", "向前", "进", "。"]]
FALLBACK_TEXT = (
    "新浪体育讯北京时间4月12日，在和马刺的比赛中，安德鲁拜纳姆倒下的那一瞬间，整个天使城都揪心了。"
    "据ESPN消息，好在湖人方面最终确认拜纳姆并无大恙。这个消息，比刚刚加时击败国王还让湖人开心。"
    "当地时间周三，拜纳姆接受了核磁共振检查，检查结果表示拜纳姆的膝盖只是有些肿胀。"
    "兰州公交集团日前表示，由于靖远路路段因道路维修于7月21日至8月底进行全封闭施工，"
    "市内35路、81路、108路3条线路将进行临时调整。")


def spans_of(words: list[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w)
    return out


def vocab_file(path: Path, text: str, extra: tuple[str, ...] = ()) -> str:
    chars = sorted({c for c in text if not c.isspace()})
    # Like Google's Chinese vocab, include "##" forms of the characters: the
    # tokenizer and masking must never produce them.
    tokens = SPECIALS + [f"[unused{i}]" for i in range(1, 4)] + chars + ["##" + c for c in chars]
    tokens += [t for t in extra if t not in tokens]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def small(tmp_path):
    tok = FullTokenizer(vocab_file(tmp_path / "v.txt", "".join(SENTS)))
    cfg = InstanceConfig(max_seq_length=24, max_predictions_per_seq=4, short_seq_prob=0.0,
                         dupe_factor=1, random_seed=7)
    return InstanceBuilder(cfg, tok), tok


def test_exact_instances_for_small_document(small):
    """Hand-checked: the first chunk is sentences 1-3 (24 tokens >= target 21);
    A = sentence 1, B = sentences 2-3, in order (label 0). B is longer, so it
    loses the 3 excess tokens: 天安 from the front (the rest of 天安门, 门, is
    a unit of its own) and ， from the back. 21 real tokens -> budget
    round(3.15) = 3: the one-token words 爱 (random: 升), 门 ([MASK]) and 。
    (random: 毛). Sentence 4 is left alone and has no clause mark: 8 tokens,
    words 指引|我们|向前|进|。, cut at the word boundary nearest its middle
    (after 我们, counted pairs:single_split_mid), in order; 8 real tokens ->
    budget 1: 进 (kept as is, the 10% case)."""
    b, tok = small
    inc = CounterDict()
    prep = b.prepare("doc:1", SENTS, [spans_of(w) for w in WORDS], inc)
    assert [units for _, units in prep.sentences] == [[1, 1, 2, 3, 1], [3, 1, 2, 1, 1],
                                                     [2, 2, 3, 1], [2, 2, 2, 1, 1]]
    insts = b.build(prep, 0, inc)
    assert len(insts) == 2
    first, second = insts
    text = lambda ids: " ".join(tok.inv_vocab[i] for i in ids)   # noqa: E731
    assert text(first.input_ids) == ("[CLS] 我 升 北 京 天 安 门 。 [SEP] "
                                     "[MASK] 上 太 阳 升 毛 伟 大 领 袖 毛 主 席 [SEP]")
    assert first.segment_ids == [0] * 10 + [1] * 14
    assert first.masked_lm_positions == [2, 10, 15]
    assert text(first.masked_lm_ids) == "爱 门 。"
    assert first.next_sentence_label == 0
    assert text(second.input_ids) == "[CLS] 指 引 我 们 [SEP] 向 前 进 。 [SEP]"
    assert (second.segment_ids, second.masked_lm_positions) == ([0] * 6 + [1] * 5, [8])
    assert text(second.masked_lm_ids) == "进" and second.next_sentence_label == 0
    assert first.token_boundary == [] and second.token_boundary == []
    assert (first.sort_key, second.sort_key) == (15214495579298963875, 3473798552530338294)
    assert inc.as_dict() == {
        "instances:prepared": 1, "instances:built": 2, "instances:tokens": 35,
        "instances:masked_tokens": 4, "instances:masked_units": 4,
        "pairs:sop:in_order": 2, "pairs:single_split_mid": 1, "pairs:truncated": 1}


def test_token_boundary_and_determinism(small, tmp_path):
    b, tok = small
    cfg = InstanceConfig(max_seq_length=24, max_predictions_per_seq=4, short_seq_prob=0.0,
                         dupe_factor=3, random_seed=7, token_boundary=True)
    bb = InstanceBuilder(cfg, tok)
    prep = bb.prepare("doc:1", SENTS, [spans_of(w) for w in WORDS])
    first, second = bb.build(prep, 0)
    # ALBERT's: 1 at [CLS], each [SEP] and each word start. [CLS]0 我1 爱2 北3
    # 天5 。8 [SEP]9 门10 上11 太12 升14 。15 伟16 领18 毛20 [SEP]23.
    assert [i for i, x in enumerate(first.token_boundary) if x] == [0, 1, 2, 3, 5, 8, 9, 10, 11,
                                                                    12, 14, 15, 16, 18, 20, 23]
    # [CLS]0 指1 我3 [SEP]5 向6 进8 。9 [SEP]10.
    assert second.token_boundary == [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1]
    again = bb.build(prep, 0)
    assert again == bb.build(bb.prepare("doc:1", SENTS, [spans_of(w) for w in WORDS]), 0)
    assert again[0] == first                          # build does not mutate prepared
    passes = [bb.build(prep, d) for d in range(3)]
    assert passes[0] != passes[1] != passes[2]
    other_seed = InstanceBuilder(dataclasses.replace(cfg, random_seed=8), tok)
    assert other_seed.build(prep, 0) != passes[0]
    assert len({i.sort_key for p in passes for i in p}) == sum(len(p) for p in passes)
    assert bb.build_all(prep) == [i for p in passes for i in p]


def test_prepare_unaligned_words_long_sentences_and_rejects(tmp_path):
    tok = FullTokenizer(vocab_file(tmp_path / "v.txt", "中文句子很长的词语", extra=("abc",)))
    cfg = InstanceConfig(max_seq_length=12, max_predictions_per_seq=3)
    b = InstanceBuilder(cfg, tok)
    inc = CounterDict()
    # "abc" is one WordPiece token but the segmenter split it (ab|c): both
    # words become one-token units; 中文 stays a 2-token unit.
    prep = b.prepare("d", ["abc中文"], [[(0, 2), (2, 3), (3, 5)]], inc)
    assert prep.sentences == [([tok.vocab["abc"], tok.vocab["中"], tok.vocab["文"]], [1, 2])]
    assert inc["mask:fallback:unaligned_word"] == 2
    # Longer than max_seq_length - 3 = 9 tokens: cut at word starts (pieces of 8, 8, 4).
    long = "中文" * 10
    prep = b.prepare("d", [long], [[(i, i + 2) for i in range(0, 20, 2)]], inc)
    assert [len(ids) for ids, _ in prep.sentences] == [8, 8, 4]
    assert all(u == [2] * (len(ids) // 2) for ids, u in prep.sentences)
    # One 20-character word: cut inside the word, each part one unit.
    prep = b.prepare("d", [long], [[(0, 20)]], inc)
    assert [u for _, u in prep.sentences] == [[9], [9], [2]]
    assert inc["instances:long_sentence_split"] == 2
    # Only word starts matter; a start outside the sentence, or no spans for
    # a non-empty sentence, falls back to characters, counted.
    prep = b.prepare("d", ["中文句子", "中文", "句子"], [[(0, 3)], [(0, 1), (7, 9)], []], inc)
    assert [u for _, u in prep.sentences] == [[4], [1, 1], [1, 1]]
    assert inc["instances:invalid_spans"] == 2
    # Whitespace-only sentences vanish; a 1-token document is rejected.
    prep = b.prepare("d", ["  ", "中"], [[(0, 2)], [(0, 1)]], inc)
    assert prep.reject_reason == REJECT_TOO_SHORT and not b.usable(prep)
    assert b.build(prep, 0, inc) == []
    assert inc["instances:rejected:too_short_for_instance"] == 1
    with pytest.raises(ValueError):
        b.prepare("d", ["a"], [], inc)


def test_config_validation():
    for bad in (dict(max_seq_length=4), dict(pair_task="mlm"), dict(masking="span"),
                dict(dupe_factor=0), dict(mask_decision="x"), dict(short_seq_prob=2.0)):
        with pytest.raises(ValueError):
            InstanceConfig(**bad)


def real_documents(limit_chars: int) -> list[str]:
    docs: list[str] = []
    n = 0
    if CORPUS.is_dir():
        for f in sorted((CORPUS / "news").glob("*.txt")):
            if "google" in f.name:
                continue
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    docs.append(line.strip())
                    n += len(line)
                if n >= limit_chars:
                    return docs
    return docs or [FALLBACK_TEXT[i:i + 120] for i in range(0, len(FALLBACK_TEXT), 40)] * 20


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Real text, split at 。！？ and segmented by jieba, with a vocab over it."""
    from corpusflow.segment.jieba_backend import JiebaSegmenter
    docs = real_documents(120_000)
    sents = [[s for s in d.replace("。", "。\n").replace("！", "！\n").split("\n") if s.strip()]
             for d in docs]
    seg = JiebaSegmenter()
    seg.setup()
    spans = [seg.segment_batch(s) for s in sents]
    vf = vocab_file(tmp_path_factory.mktemp("v") / "vocab.txt", "".join(docs).lower(),
                    extra=("the", "##s", "##ing", "nba", "iphone"))
    return sents, spans, FullTokenizer(vf)


@pytest.mark.parametrize("masking_kind,pair_task", [("wwm", "sop"), ("ngram", "nsp"),
                                                    ("token", "none")])
def test_properties_on_real_text(real, masking_kind, pair_task):
    sents, spans, tok = real
    cfg = InstanceConfig(masking=masking_kind, pair_task=pair_task, token_boundary=True)
    b = InstanceBuilder(cfg, tok)
    inc = CounterDict()
    preps = [b.prepare(f"doc:{i}", s, sp, inc) for i, (s, sp) in enumerate(zip(sents, spans))]
    window: list = []

    def random_doc(rng: random.Random):
        return window[int(rng.random() * len(window))] if window else None

    cjk_cont = {i for t, i in tok.vocab.items() if t.startswith("##") and "\u4e00" <= t[2:3] <= "\u9fff"}
    specials = {tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id}
    n_inst = no_pred = 0
    labels = []
    for p in preps:
        if not b.usable(p):
            continue
        for d in range(cfg.dupe_factor):
            for inst in b.build(p, d, inc, random_doc=random_doc if pair_task == "nsp" else None):
                n_inst += 1
                ids = inst.input_ids
                n = len(ids)
                assert n <= cfg.max_seq_length and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
                seps = [i for i, x in enumerate(ids) if x == tok.sep_id]
                # SOP/NSP: always a pair (no single segment with a fixed label).
                assert len(seps) == (1 if pair_task == "none" else 2)
                assert inst.segment_ids == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1)
                pos = inst.masked_lm_positions
                assert pos == sorted(set(pos)) and len(pos) <= cfg.max_predictions_per_seq
                no_pred += not pos
                assert not set(pos) & ({0} | set(seps))
                assert len(pos) == masking.masked_lm_budget(n - 1 - len(seps), 0.15, 20)
                assert not set(inst.masked_lm_ids) & (cjk_cont | specials)
                assert not set(ids) & cjk_cont
                assert all(0 <= x < len(tok.vocab) for x in ids + inst.masked_lm_ids)
                assert len(inst.token_boundary) == n and inst.token_boundary[0] == 1
                assert all(inst.token_boundary[p_] == 1 for p_ in seps)
                labels.append(inst.next_sentence_label)
                serialize_instance(inst, cfg.max_seq_length, cfg.max_predictions_per_seq, True)
        window.append(p)
        del window[:-10]
    assert n_inst > (1000 if CORPUS.is_dir() else 100)
    got = inc.as_dict()
    assert got["instances:built"] == n_inst
    assert no_pred == 0
    if pair_task == "none":
        assert set(labels) == {0}
    else:
        # A sanity check; 50% ± 1% over many instances: test_pairs, test_instance_quality.
        assert 0.45 < sum(labels) / len(labels) < 0.55


def test_wwm_masks_whole_jieba_words(real):
    """Masking real jieba units: each masked span is exactly one word (wwm) or
    1..3 consecutive words of one segment (ngram), except a last span that
    is the prefix of a word when no whole word fits the budget's rest."""
    sents, spans, tok = real
    b = InstanceBuilder(InstanceConfig(), tok)
    preps = [b.prepare(str(i), s, sp) for i, (s, sp) in enumerate(zip(sents[:300], spans))]
    rng = random.Random(0)
    for kind, max_words in (("wwm", 1), ("ngram", 3)):
        cfg = masking.MaskConfig(masking=kind)
        for p in preps:
            for ids, units in p.sentences:
                seq = [tok.cls_id] + ids + [tok.sep_id]
                m = masking.mask_sequence(seq, [(1, units)], cfg, rng, tok.mask_id, b.replace_ids)
                bounds = [1]
                for u in units:
                    bounds.append(bounds[-1] + u)
                spans = m.spans
                if m.partial:
                    # The budget's last tokens: a prefix of one longer word.
                    a, e = spans[-1]
                    spans = spans[:-1]
                    assert a in bounds and e not in bounds and e < bounds[bounds.index(a) + 1]
                for a, e in spans:
                    assert a in bounds and e in bounds
                    assert 1 <= bounds.index(e) - bounds.index(a) <= max_words


def test_build_speed_report(real):
    """Not a benchmark gate; prints instances/s for build + serialize at seq 128."""
    sents, spans, tok = real
    b = InstanceBuilder(InstanceConfig(), tok)
    preps = [b.prepare(str(i), s, sp) for i, (s, sp) in enumerate(zip(sents, spans))]
    t0 = time.process_time()
    n = 0
    for p in preps:
        for d in range(2):
            for inst in b.build(p, d):
                serialize_instance(inst, 128, 20)
                n += 1
    dt = time.process_time() - t0
    print(f"\nbuild+serialize: {n / dt:.0f} instances/s (seq 128, wwm, sop)")
    assert n > 0
