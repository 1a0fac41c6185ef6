"""Build a BERT ``vocab.txt`` and/or a sentencepiece model from cleaned documents.

``python -m vocab.build --docs GLOB --output DIR --vocab_size N
[--kind wordpiece|sentencepiece|both] [--sample_sentences N]`` samples sentences,
trains, and writes into DIR:

- ``vocab.txt`` (kinds wordpiece, both): for the pipeline's WordPiece tokenizer.
  Layout, mirroring Google's Chinese BERT vocab so the two can be swapped:
  ``[PAD]``=0, ``[unused1..U]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``
  (with the default U=99: ids 100-103); then punctuation and other single
  characters BERT splits off, then CJK characters, then the Latin/digit alphabet
  (word-initial, then ``##``), then learnt WordPiece pieces, then, with
  ``--cjk_continuations``, ``##`` + each CJK character. Characters are ordered
  by frequency, ties by code point.
- ``spm.model`` and ``spm.vocab`` (kinds sentencepiece, both): ALBERT's recipe
  (``<pad>``=0, ``<unk>``=1, ``[CLS]``/``[SEP]``/``[MASK]``=2-4 as control symbols,
  no BOS/EOS, ``character_coverage`` 0.99995). ``--kind sentencepiece`` writes no
  vocab.txt: a vocab.txt made of sentencepiece pieces would leave most Chinese
  text as [UNK] under the WordPiece tokenizer.
- ``audit.json``: each written vocab audited against the sample (see vocab.audit).

The vocab.txt is built from BERT's own view of the text (vocab.wordpiece): every
CJK character and punctuation mark BERT splits off becomes an entry, and only the
remaining words (Latin, digits, kana, ...) go to HuggingFace ``tokenizers``'
WordPiece trainer, which fills the rest of ``vocab_size``. Same input and options
give the same bytes: the sample is seeded, ties are ordered, and the trainers are
made deterministic (see ``learn_pieces`` and ``train_sentencepiece``).
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import re
import sys
from typing import Any, Iterable, Optional, Sequence

from vocab import audit as audit_mod
from vocab import sample as sample_mod
from vocab.wordpiece import MAX_CHARS_PER_WORD, KeyCounter, is_cjk, is_punctuation

KINDS = ("wordpiece", "sentencepiece", "both")
DEFAULT_SEED = 12345


class VocabSizeError(ValueError):
    """The sample cannot support the requested vocab size (or the size is too small)."""


def special_tokens(num_unused: int = 99) -> list[str]:
    """[PAD], [unused1..num_unused], [UNK], [CLS], [SEP], [MASK] — Chinese BERT's layout."""
    if num_unused < 0:
        raise ValueError("num_unused must be >= 0")
    return ["[PAD]"] + [f"[unused{i}]" for i in range(1, num_unused + 1)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _by_count(counts: dict[str, int]) -> list[str]:
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def learn_pieces(words: dict[str, int], n: int, min_count: int = 2, progress: bool = False) -> list[str]:
    """Up to ``n`` multi-character WordPiece pieces learnt from ``words``, in learnt order.

    Uses ``tokenizers``' WordPieceTrainer. Its merge order breaks count ties by
    token id, and it gives ``##x`` ids in hash-map order, so two runs can learn
    different pieces; passing every ``##x`` as a special token, in sorted order,
    fixes those ids and makes the result deterministic.
    """
    if n <= 0 or not words:
        return []
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = {c for w in words for c in w}  # the trainer's alphabet: every character
    cont = sorted({"##" + c for w in words for c in w[1:]})
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=MAX_CHARS_PER_WORD))
    # Words never contain " " (BERT split on it), but may contain other characters
    # tokenizers would treat as whitespace, so split on " " alone.
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    trainer = trainers.WordPieceTrainer(
        vocab_size=len(cont) + len(alphabet) + n, min_frequency=min_count, special_tokens=cont,
        continuing_subword_prefix="##", show_progress=progress)

    def texts() -> Iterable[str]:
        for w in sorted(words):
            yield (w + " ") * words[w]

    tok.train_from_iterator(texts(), trainer)
    v = tok.get_vocab()
    pieces = [t for t in sorted(v, key=v.get) if len(t[2:] if t.startswith("##") else t) > 1]
    return pieces[:n]


def wordpiece_vocab(words: dict[str, int], vocab_size: int, *, num_unused: int = 99,
                    cjk_continuations: bool = False, min_char_count: int = 1, min_piece_count: int = 2,
                    allow_smaller: bool = False, progress: bool = False,
                    keep_words: Sequence[str] = ()) -> list[str]:
    """The entries of a vocab.txt, given BERT basic-tokenizer word counts.

    ``keep_words`` (the names inside PII placeholders seen in the sample) come
    right after the special tokens, so each is one whole entry.
    """
    specials = special_tokens(num_unused) + [w for w in dict.fromkeys(keep_words)]
    budget = vocab_size - len(specials)
    if budget <= 0:
        raise VocabSizeError(f"vocab_size {vocab_size} leaves no room after {len(specials)} special tokens")
    # Words BERT always splits to one character (CJK, punctuation) become single
    # entries; everything else is left to WordPiece.
    punct: dict[str, int] = collections.Counter()
    cjk: dict[str, int] = collections.Counter()
    latin: dict[str, int] = {}
    for w, n in words.items():
        if len(w) == 1 and is_cjk(w):
            cjk[w] += n
        elif len(w) == 1 and is_punctuation(w):
            punct[w] += n
        elif len(w) <= MAX_CHARS_PER_WORD:  # longer words are [UNK] whatever the vocab
            latin[w] = n
    initial: dict[str, int] = collections.Counter()
    cont: dict[str, int] = collections.Counter()
    for w, n in latin.items():
        initial[w[0]] += n
        for c in w[1:]:
            cont["##" + c] += n
    sections = {
        "punct": {t: n for t, n in punct.items() if n >= min_char_count},
        "cjk": {t: n for t, n in cjk.items() if n >= min_char_count},
        "initial": {t: n for t, n in initial.items() if n >= min_char_count},
        "cont": {t: n for t, n in cont.items() if n >= min_char_count},
    }
    if cjk_continuations:
        sections["cjk_cont"] = {"##" + t: n for t, n in sections["cjk"].items()}
    fixed = sum(len(s) for s in sections.values())
    if fixed > budget:
        # More characters than room: keep the most frequent. On ties a ## entry
        # loses to a word-initial one (a ##CJK entry, never used by BERT's own
        # tokenizer, counts as often as its character).
        rank = [(-n, name in ("cont", "cjk_cont"), t, name) for name, s in sections.items() for t, n in s.items()]
        keep = {(name, t) for _, _, t, name in sorted(rank)[:budget]}
        dropped = fixed - budget
        sections = {name: {t: n for t, n in s.items() if (name, t) in keep} for name, s in sections.items()}
        if progress:
            print(f"vocab.build: vocab_size {vocab_size} has room for {budget} of {fixed} characters; "
                  f"dropped the {dropped} rarest", file=sys.stderr)
        pieces: list[str] = []
    else:
        # A few spare pieces in case one duplicates a character entry.
        pieces = learn_pieces(latin, budget - fixed + 16, min_piece_count, progress=False)
    head = specials + _by_count(sections["punct"]) + _by_count(sections["cjk"]) \
        + _by_count(sections["initial"]) + _by_count(sections["cont"])
    head = list(dict.fromkeys(head))  # NFD can, in theory, put a CJK character inside a Latin word
    tail = ["##" + t for t in _by_count(sections["cjk"]) if "##" + t in sections.get("cjk_cont", {})]
    taken = set(head) | set(tail)
    pieces = [p for p in pieces if p not in taken][:max(0, vocab_size - len(head) - len(tail))]
    entries = head + pieces + tail
    if len(entries) < vocab_size and not allow_smaller:
        raise VocabSizeError(
            f"the sample yields only {len(entries):,} distinct entries ({len(specials)} special, "
            f"{len(sections['punct']) + len(sections['cjk']):,} distinct characters, "
            f"{len(sections['initial']) + len(sections['cont']):,} Latin alphabet entries, {len(pieces):,} "
            f"WordPiece pieces seen at least {min_piece_count} times), fewer than vocab_size {vocab_size:,}; "
            "lower --vocab_size, sample more text (--sample_sentences), or pass --allow_smaller")
    return entries


_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def train_sentencepiece(sentences: Iterable[str], vocab_size: int, *, model_type: str = "unigram",
                        character_coverage: float = 0.99995, user_defined_symbols: Sequence[str] = (),
                        seed: int = DEFAULT_SEED, num_threads: int = 1, progress: bool = False) -> bytes:
    """Train a sentencepiece model on ``sentences``; returns the serialized model.

    Normalisation is ``identity``: the cleaning stage already normalised the text
    (full-width ASCII folded, Traditional to Simplified) and deliberately keeps
    Chinese full-width punctuation, which sentencepiece's default ``nmt_nfkc``
    would fold (``，`` to ``,``) — making the model disagree with vocab.txt and
    with the text the pipeline tokenizes. Training from an iterator into memory
    keeps file paths out of the model, so the bytes depend only on the input;
    the seed and a fixed thread count make training itself repeatable.
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be unigram or bpe, not {model_type!r}")
    # sentencepiece's own RNG (seed-piece sampling) is process-wide in the
    # library; seeding it here before each training is the only handle it offers.
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, normalization_rule_name="identity",
            pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
            user_defined_symbols=list(user_defined_symbols),
            # The input is already a sample: use all of it, in order.
            input_sentence_size=0, shuffle_input_sentence=False,
            max_sentence_length=4 * sample_mod.MAX_SENTENCE_CHARS + 16,
            num_threads=num_threads, minloglevel=1 if progress else 2)
    except RuntimeError as e:
        msg = str(e)
        m = _TOO_HIGH.search(msg)
        if m:
            raise VocabSizeError(f"sentencepiece: the sample supports at most {int(m.group(2)):,} pieces, "
                                 f"fewer than vocab_size {vocab_size:,}; lower --vocab_size or sample more "
                                 "text (--sample_sentences)") from None
        m = _TOO_LOW.search(msg)
        if m:
            raise VocabSizeError(f"sentencepiece: vocab_size {vocab_size:,} is smaller than the "
                                 f"{int(m.group(2)):,} characters needed for character_coverage "
                                 f"{character_coverage}; raise --vocab_size or lower --character_coverage") from None
        raise ValueError(f"sentencepiece training failed: {msg}") from None
    return buf.getvalue()


def spm_vocab_text(model: bytes) -> str:
    """The ``spm.vocab`` listing (``piece<TAB>score``) that spm_train writes."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    return "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))


def _placeholders_in(sentences: Sequence[str]) -> list[str]:
    """The PII placeholders (``corpusflow.pii.PLACEHOLDERS``) that occur in the sample, in table order."""
    from corpusflow.pii import PLACEHOLDERS
    rx = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
    seen: set[str] = set()
    for s in sentences:
        if "[" in s:
            seen.update(rx.findall(s))
    return [p for p in PLACEHOLDERS.values() if p in seen]


def _write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)  # never leave a half-written vocab under the real name


def build_vocab(docs: str | Sequence[str], output_dir: str, vocab_size: int, *, kind: str = "wordpiece",
                sample_sentences: int = 1_000_000, seed: int = DEFAULT_SEED, num_unused: int = 99,
                cjk_continuations: bool = False, min_char_count: int = 1, min_piece_count: int = 2,
                do_lower_case: bool = True, allow_smaller: bool = False, model_type: str = "unigram",
                character_coverage: float = 0.99995, user_defined_symbols: Sequence[str] = (),
                num_threads: int = 1, compare: Optional[str] = None,
                progress: bool = True) -> dict[str, Any]:
    """Sample, train and write the vocab(s) and ``audit.json`` into ``output_dir``.

    Returns the audit.json content: ``{"build": options, "corpus": sample stats,
    "audits": [one per written vocab]}``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if vocab_size <= 0:
        raise VocabSizeError("vocab_size must be positive")
    if sample_sentences <= 0:
        raise ValueError("sample_sentences must be positive")
    other = audit_mod.load_vocab(compare) if compare else None  # fail early on a bad file
    prog = sample_mod.Progress("vocab.build", progress)  # times below count from here
    smp = sample_mod.sample_sentences(docs, sample_sentences, seed=seed, progress=progress)
    os.makedirs(output_dir, exist_ok=True)
    keys = KeyCounter()
    keys.add_all(smp.sentences)
    written: list[str] = []
    # PII placeholders the clean stage wrote ([mobile], ...): their names become
    # whole vocab.txt entries and the placeholders whole sentencepiece pieces.
    placeholders = _placeholders_in(smp.sentences)
    if kind in ("wordpiece", "both"):
        entries = wordpiece_vocab(keys.words(do_lower_case), vocab_size, num_unused=num_unused,
                                  cjk_continuations=cjk_continuations, min_char_count=min_char_count,
                                  min_piece_count=min_piece_count, allow_smaller=allow_smaller,
                                  progress=progress, keep_words=[p[1:-1] for p in placeholders])
        _write(os.path.join(output_dir, "vocab.txt"), "".join(t + "\n" for t in entries).encode("utf-8"))
        written.append("vocab.txt")
        prog.done(f"vocab.txt: {len(entries):,} entries")
    if kind in ("sentencepiece", "both"):
        model = train_sentencepiece(smp.sentences, vocab_size, model_type=model_type,
                                    character_coverage=character_coverage,
                                    user_defined_symbols=list(dict.fromkeys(list(user_defined_symbols)
                                                                            + placeholders)), seed=seed,
                                    num_threads=num_threads, progress=progress)
        _write(os.path.join(output_dir, "spm.model"), model)
        _write(os.path.join(output_dir, "spm.vocab"), spm_vocab_text(model).encode("utf-8"))
        written.append("spm.model")
        prog.done("spm.model")
    audits = []
    for name in written:
        v = audit_mod.load_vocab(os.path.join(output_dir, name))
        a = audit_mod.audit_with_compare(v, other, smp.sentences, keys=keys, do_lower_case=do_lower_case)
        a["vocab"] = name  # relative to audit.json, so the file does not depend on DIR
        audits.append(a)
    options = {"docs": [docs] if isinstance(docs, str) else list(docs), "kind": kind, "vocab_size": vocab_size,
               "sample_sentences": sample_sentences, "seed": seed, "do_lower_case": do_lower_case}
    if kind != "sentencepiece":
        options.update(num_unused=num_unused, cjk_continuations=cjk_continuations,
                       min_char_count=min_char_count, min_piece_count=min_piece_count)
    if kind != "wordpiece":
        options.update(model_type=model_type, character_coverage=character_coverage,
                       user_defined_symbols=list(user_defined_symbols), num_threads=num_threads,
                       normalization_rule_name="identity")
    result = {"build": options, "corpus": smp.describe(), "audits": audits}
    audit_mod.write_json(result, os.path.join(output_dir, "audit.json"))
    prog.done("audit.json")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vocab.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", required=True, action="append",
                   help="cleaned documents (.jsonl or .jsonl.gz), glob; may repeat")
    p.add_argument("--output", required=True, help="directory for vocab.txt / spm.model / audit.json")
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--kind", choices=KINDS, default="wordpiece")
    p.add_argument("--sample_sentences", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    g = p.add_argument_group("vocab.txt (WordPiece)")
    g.add_argument("--num_unused", type=int, default=99, help="[unusedN] slots after [PAD] (Chinese BERT: 99)")
    g.add_argument("--cjk_continuations", action="store_true",
                   help="also add ##+CJK entries, as the Chinese BERT vocab has")
    g.add_argument("--min_char_count", type=int, default=1, help="drop characters seen fewer times")
    g.add_argument("--min_piece_count", type=int, default=2, help="WordPiece merges need this many occurrences")
    g.add_argument("--cased", action="store_true", help="do not lower-case (for a cased tokenizer)")
    g.add_argument("--allow_smaller", action="store_true",
                   help="write a smaller vocab instead of failing when the sample has too few entries")
    g = p.add_argument_group("sentencepiece")
    g.add_argument("--model_type", choices=("unigram", "bpe"), default="unigram")
    g.add_argument("--character_coverage", type=float, default=0.99995)
    g.add_argument("--user_defined_symbols", default="", help="comma-separated pieces always kept whole")
    g.add_argument("--num_threads", type=int, default=1,
                   help="sentencepiece training threads (the model is reproducible for a fixed count)")
    p.add_argument("--compare", help="a second vocab to diff against in audit.json")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    symbols = [s for s in args.user_defined_symbols.split(",") if s]
    try:
        result = build_vocab(args.docs, args.output, args.vocab_size, kind=args.kind,
                             sample_sentences=args.sample_sentences, seed=args.seed, num_unused=args.num_unused,
                             cjk_continuations=args.cjk_continuations, min_char_count=args.min_char_count,
                             min_piece_count=args.min_piece_count, do_lower_case=not args.cased,
                             allow_smaller=args.allow_smaller, model_type=args.model_type,
                             character_coverage=args.character_coverage, user_defined_symbols=symbols,
                             num_threads=args.num_threads, compare=args.compare, progress=not args.quiet)
    except (ValueError, OSError) as e:
        print(f"vocab.build: error: {e}", file=sys.stderr)
        return 2
    print(audit_mod.format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
