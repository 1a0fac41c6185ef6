"""Audit a vocabulary against a corpus: what it covers, what falls to [UNK].

``python -m vocab.audit --vocab FILE --docs GLOB [--compare FILE]`` prints a
short report and writes the numbers as JSON. ``FILE`` is a BERT ``vocab.txt``
(one token a line, id = line number) audited with BERT's WordPiece rules, or a
sentencepiece ``.model`` audited with sentencepiece itself.

Definitions (the same for both kinds, so two vocabs can be compared):
- characters: characters the tokenizer sees (whitespace and control characters
  excluded; for WordPiece after its lower-casing and accent stripping); a
  character is uncovered when it ends up inside an [UNK] token.
- tokens: tokenizer output tokens; ``token_coverage`` is the share not [UNK].
- top [UNK] characters: for WordPiece, the character of each [UNK] word at which
  greedy matching got stuck (no entry starts with it in the form its position
  needs: ``c`` first, ``##c`` after); for sentencepiece, the characters inside
  [UNK] pieces.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import os
import sys
from typing import Any, Iterable, Iterator, Optional, Sequence

from corpusflow.tokenize.wordpiece import parse_vocab
from vocab import sample as sample_mod
from vocab.wordpiece import MAX_CHARS_PER_WORD, UNK, KeyCounter, is_cjk, wordpiece_with_failure

REQUIRED_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPM_BATCH = 2000


class VocabError(ValueError):
    """A vocab file that cannot be used (unreadable, not UTF-8, duplicates, empty)."""


@dataclasses.dataclass
class Vocab:
    """A loaded vocabulary: its tokens in id order, and how to tokenize with it."""

    path: str
    kind: str  # "wordpiece" or "sentencepiece"
    tokens: list[str]
    sha256: str
    model: Any = None  # sentencepiece.SentencePieceProcessor for kind "sentencepiece"


def load_vocab(path: str) -> Vocab:
    """Load ``vocab.txt``, an ``spm.model``, or an ``spm.vocab`` (compare only).

    A ``vocab.txt`` is read as BERT and Hugging Face read it (``parse_vocab``:
    one token a ``\\n``-separated line, only the line end removed, so
    whitespace-only tokens keep their ids); an entry that repeats an earlier
    line is an error naming both lines, since the tokenizer would silently give
    the token the later id.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise VocabError(f"cannot read vocab {path}: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if path.endswith(".model"):
        import sentencepiece as spm

        try:
            sp = spm.SentencePieceProcessor(model_proto=data)
        except (RuntimeError, OSError) as e:
            raise VocabError(f"{path}: not a sentencepiece model ({e})") from None
        tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        return Vocab(path, "sentencepiece", tokens, digest, sp)
    spm_vocab = path.endswith(".vocab")  # sentencepiece's "piece<TAB>score" listing
    try:
        tokens = parse_vocab(data, path)
    except ValueError as e:
        raise VocabError(str(e)) from None
    if spm_vocab:
        first_line: dict[str, int] = {}
        for lineno, line in enumerate(tokens, 1):
            piece = line.split("\t", 1)[0]
            if piece in first_line:
                raise VocabError(f"{path}:{lineno}: duplicate entry {piece!r} (first at line {first_line[piece]})")
            first_line[piece] = lineno
        tokens = list(first_line)
    return Vocab(path, "sentencepiece" if spm_vocab else "wordpiece", tokens, digest)


def _base(v: Vocab) -> dict[str, Any]:
    return {"vocab": v.path, "kind": v.kind, "size": len(v.tokens), "sha256": v.sha256}


def _ratios(chars: int, tokens: int, unk_chars: int, unk_tokens: int) -> dict[str, Any]:
    return {
        "characters": chars, "tokens": tokens, "unk_characters": unk_chars, "unk_tokens": unk_tokens,
        "character_coverage": (chars - unk_chars) / chars if chars else None,
        "token_coverage": (tokens - unk_tokens) / tokens if tokens else None,
        "tokens_per_character": tokens / chars if chars else None,
    }


def _top(counter: collections.Counter, k: int) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k])


def audit_wordpiece(v: Vocab, words: collections.Counter, top_k: int = 20) -> dict[str, Any]:
    """Audit a vocab.txt given BERT basic-tokenizer word counts."""
    vocab = set(v.tokens)
    if UNK not in vocab:
        raise VocabError(f"{v.path}: no {UNK} entry; the WordPiece tokenizer needs one")
    chars = tokens = unk_chars = unk_tokens = too_long = 0
    culprits: collections.Counter[str] = collections.Counter()
    for word, n in words.items():
        pieces, stuck = wordpiece_with_failure(word, vocab)
        chars += n * len(word)
        tokens += n * len(pieces)
        if stuck >= 0:
            unk_tokens += n
            unk_chars += n * len(word)
            if stuck == len(word):
                too_long += n
            else:
                culprits[word[stuck]] += n
    out = _base(v)
    out["missing_specials"] = [t for t in REQUIRED_SPECIALS if t not in vocab]
    out.update(_ratios(chars, tokens, unk_chars, unk_tokens))
    out["unk_words_too_long"] = too_long
    out["top_unk_characters"] = _top(culprits, top_k)
    return out


class SentencePieceAudit:
    """Accumulates sentencepiece coverage over texts (one line each)."""

    def __init__(self, v: Vocab) -> None:
        self.v = v
        self.unk_id = v.model.unk_id()
        self.chars = self.tokens = self.unk_chars = self.unk_tokens = 0
        self.culprits: collections.Counter[str] = collections.Counter()
        self._batch: list[str] = []

    def add(self, text: str) -> None:
        self._batch.append(text)
        if len(self._batch) >= _SPM_BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        for text, ids in zip(batch, self.v.model.encode(batch, num_threads=1)):
            self.chars += len("".join(text.split()))  # non-whitespace characters
            self.tokens += len(ids)
            if self.unk_id in ids:
                # Rare: only then pay for offsets to find which characters were lost.
                enc = self.v.model.encode_as_offset_mapping(text)
                for pid, (s, e) in zip(enc["ids"], enc["offsets"]):
                    if pid == self.unk_id:
                        self.unk_tokens += 1
                        for c in text[s:e]:
                            if not c.isspace():
                                self.unk_chars += 1
                                self.culprits[c] += 1

    def result(self, top_k: int = 20) -> dict[str, Any]:
        self._flush()
        out = _base(self.v)
        out["missing_specials"] = [t for t in ("[CLS]", "[SEP]", "[MASK]") if self.v.model.piece_to_id(t) == self.unk_id]
        out.update(_ratios(self.chars, self.tokens, self.unk_chars, self.unk_tokens))
        out["top_unk_characters"] = _top(self.culprits, top_k)
        return out


def _token_type(tok: str) -> str:
    if (tok.startswith("[") and tok.endswith("]") and len(tok) > 2) or (tok.startswith("<") and tok.endswith(">")):
        return "special"
    body = tok[2:] if tok.startswith("##") else tok
    if len(body) == 1 and is_cjk(body):
        return "cjk_continuation" if tok.startswith("##") else "cjk"
    if tok.startswith("##"):
        return "continuation"
    return "char" if len(body) == 1 else "word"


def compare_vocabs(a: Vocab, b: Vocab, samples: int = 20) -> dict[str, Any]:
    """Token-set differences between two vocabs (samples in each file's order)."""
    sa, sb = set(a.tokens), set(b.tokens)
    only_a = [t for t in a.tokens if t not in sb]
    only_b = [t for t in b.tokens if t not in sa]

    def some(toks: list[str]) -> list[str]:
        # [unusedN] and other specials say nothing; show real tokens.
        return [t for t in toks if _token_type(t) != "special"][:samples]

    def by_type(toks: list[str]) -> dict[str, int]:
        return dict(sorted(collections.Counter(_token_type(t) for t in toks).items()))

    return {"other": b.path, "other_size": len(b.tokens), "common": len(sa & sb),
            "only_in_vocab": len(only_a), "only_in_other": len(only_b),
            "only_in_vocab_by_type": by_type(only_a), "only_in_other_by_type": by_type(only_b),
            "only_in_vocab_sample": some(only_a), "only_in_other_sample": some(only_b)}


def run_audits(vocabs: Sequence[Vocab], texts: Optional[Iterable[str]] = None, *,
               keys: Optional[KeyCounter] = None, do_lower_case: bool = True,
               top_k: int = 20) -> list[dict[str, Any]]:
    """Audit each vocab over one pass of ``texts`` (lines; no newlines inside).

    ``keys``, if given, already counts the texts for WordPiece; ``texts`` is then
    read only when a sentencepiece model is among ``vocabs``.
    """
    spm_audits = {id(v): SentencePieceAudit(v) for v in vocabs if v.kind == "sentencepiece" and v.model}
    for v in vocabs:
        if v.kind == "sentencepiece" and v.model is None:
            raise VocabError(f"{v.path}: auditing sentencepiece needs the .model file, not the .vocab listing")
    need_keys = keys is None and any(v.kind == "wordpiece" for v in vocabs)
    if need_keys:
        keys = KeyCounter()
    if need_keys or spm_audits:
        if texts is None:
            raise ValueError("run_audits needs texts")
        for text in texts:
            if need_keys:
                keys.add(text)
            for a in spm_audits.values():
                a.add(text)
    words = keys.words(do_lower_case) if keys is not None else None
    results = []
    for v in vocabs:
        if v.kind == "wordpiece":
            r = audit_wordpiece(v, words, top_k)
            r["do_lower_case"] = do_lower_case
        else:
            r = spm_audits[id(v)].result(top_k)
        results.append(r)
    return results


def audit_with_compare(vocab: Vocab, other: Optional[Vocab], texts: Optional[Iterable[str]], *,
                       keys: Optional[KeyCounter] = None, do_lower_case: bool = True,
                       top_k: int = 20) -> dict[str, Any]:
    """Audit ``vocab``; with ``other``, add the differences and other's own audit.

    ``other`` may be an ``spm.vocab`` listing: it is diffed but cannot be audited
    (``other_audit`` is then null).
    """
    auditable = other is not None and (other.kind == "wordpiece" or other.model is not None)
    vocabs = [vocab] + ([other] if auditable else [])
    results = run_audits(vocabs, texts, keys=keys, do_lower_case=do_lower_case, top_k=top_k)
    out = results[0]
    if other is not None:
        out["compare"] = compare_vocabs(vocab, other)
        out["compare"]["other_audit"] = results[1] if auditable else None
    return out


def _lines(texts: Iterable[str]) -> Iterator[str]:
    # Audit line by line: sentencepiece would count "\n" as an unknown character.
    for t in texts:
        for line in t.split("\n"):
            if line.strip():
                yield line


def audit_vocab(vocab: str, docs: str | Sequence[str], *, compare: Optional[str] = None,
                output: Optional[str] = None, do_lower_case: bool = True, sample_sentences: int = 0,
                seed: int = 12345, top_k: int = 20, progress: bool = True) -> dict[str, Any]:
    """Audit the vocab file ``vocab`` over the documents matched by ``docs``.

    Reads every document (streaming) unless ``sample_sentences`` > 0, in which case
    it audits a seeded reservoir sample of that many sentences. Returns
    ``{"corpus": ..., "audits": [audit]}`` and writes it to ``output`` if given.
    """
    v = load_vocab(vocab)
    other = load_vocab(compare) if compare else None
    if sample_sentences > 0:
        smp = sample_mod.sample_sentences(docs, sample_sentences, seed=seed, progress=progress)
        corpus: dict[str, Any] = {"docs": _as_list(docs), "seed": seed, **smp.describe()}
        texts: Iterable[str] = smp.sentences
    else:
        files = sample_mod.expand_docs(docs)
        stats = sample_mod.ReadStats()
        prog = sample_mod.Progress("vocab.audit", progress)
        texts = _lines(sample_mod.iter_texts(files, stats, prog))
        corpus = {"docs": _as_list(docs)}
    audit = audit_with_compare(v, other, texts, do_lower_case=do_lower_case, top_k=top_k)
    if sample_sentences <= 0:
        corpus.update(files=stats.files, documents=stats.documents)
        prog.done(f"{stats.documents:,} documents")
    if not audit["characters"]:
        raise sample_mod.CorpusError("the documents contain no text to audit")
    result = {"corpus": corpus, "audits": [audit]}
    if output:
        write_json(result, output)
    return result


def _as_list(docs: str | Sequence[str]) -> list[str]:
    return [docs] if isinstance(docs, str) else list(docs)


def write_json(obj: Any, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=1, sort_keys=False)
        fh.write("\n")


def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:.4f}%"


def format_report(result: dict[str, Any]) -> str:
    """A short human-readable summary of ``{"corpus", "audits"}``."""
    lines = []
    c = result.get("corpus", {})
    if "sentences_sampled" in c:
        lines.append(f"corpus: {c['sentences_sampled']:,} sentences sampled of {c['sentences_seen']:,} "
                     f"from {c['documents']:,} documents")
    elif "documents" in c:
        lines.append(f"corpus: {c['documents']:,} documents in {c['files']} files")
    for a in result["audits"]:
        lines += _format_audit(a)
        cmp_ = a.get("compare")
        if cmp_:
            lines.append(f"  vs {cmp_['other']} ({cmp_['other_size']:,} entries): {cmp_['common']:,} in both, "
                         f"{cmp_['only_in_vocab']:,} only here {cmp_['only_in_vocab_by_type']}, "
                         f"{cmp_['only_in_other']:,} only there {cmp_['only_in_other_by_type']}")
            if cmp_["only_in_vocab_sample"]:
                lines.append("    only here:  " + " ".join(cmp_["only_in_vocab_sample"]))
            if cmp_["only_in_other_sample"]:
                lines.append("    only there: " + " ".join(cmp_["only_in_other_sample"]))
            if cmp_["other_audit"]:
                lines += ["  " + s for s in _format_audit(cmp_["other_audit"])]
    return "\n".join(lines)


def _format_audit(a: dict[str, Any]) -> list[str]:
    out = [f"{a['vocab']}: {a['kind']}, {a['size']:,} entries, sha256 {a['sha256'][:16]}",
           f"  {a['characters']:,} characters -> {a['tokens']:,} tokens "
           f"({a['tokens_per_character']:.4f} per character)" if a["characters"] else "  no text",
           f"  covered: {_pct(a['character_coverage'])} of characters, {_pct(a['token_coverage'])} of tokens "
           f"not [UNK] ({a['unk_characters']:,} characters, {a['unk_tokens']:,} tokens lost)"]
    if a["top_unk_characters"]:
        out.append("  top [UNK] characters: " + ", ".join(f"{c!r} {n:,}" for c, n in list(a["top_unk_characters"].items())[:10]))
    if a.get("unk_words_too_long"):
        out.append(f"  words over {MAX_CHARS_PER_WORD} characters ([UNK]): {a['unk_words_too_long']:,}")
    if a["missing_specials"]:
        out.append("  missing special tokens: " + " ".join(a["missing_specials"]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vocab.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", required=True, help="vocab.txt (WordPiece) or spm.model (sentencepiece)")
    p.add_argument("--docs", required=True, action="append",
                   help="cleaned documents (.jsonl or .jsonl.gz), glob; may repeat")
    p.add_argument("--compare", help="a second vocab to diff against (and audit alongside)")
    p.add_argument("--output", default="audit.json", help="where to write the JSON (default ./audit.json)")
    p.add_argument("--sample_sentences", type=int, default=0,
                   help="audit a seeded sample of this many sentences instead of all text (0 = all)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--cased", action="store_true", help="the WordPiece tokenizer does not lower-case")
    p.add_argument("--top", type=int, default=20, help="how many [UNK] characters to list")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    try:
        result = audit_vocab(args.vocab, args.docs, compare=args.compare, output=args.output,
                             do_lower_case=not args.cased, sample_sentences=args.sample_sentences,
                             seed=args.seed, top_k=args.top, progress=not args.quiet)
    except (ValueError, OSError) as e:
        print(f"vocab.audit: error: {e}", file=sys.stderr)
        return 2
    print(format_report(result))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
