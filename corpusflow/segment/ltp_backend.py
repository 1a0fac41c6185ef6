"""LTP behind the ``Segmenter`` interface: perceptron (legacy) and neural models.

A model is a directory with LTP's ``config.json``:

* legacy/perceptron: ``{"nerual": false, "tasks": {"cws": "<file>", ...}}`` (LTP's
  own spelling of "neural"); the ``cws`` file is loaded with
  ``ltp_extension.perceptron.CWSModel``. Needs only ``ltp-extension`` (no torch).
  ``python -m corpusflow.segment.train`` writes such a directory.
* neural: ``{"nerual": true, "model": ..., "vocabs": ...}`` plus tokenizer files and
  ``pytorch_model.bin``; loaded with ``ltp.LTP(dir)``, which needs torch and
  transformers < 5 (5.x removed ``batch_encode_plus``, which LTP calls).

The directory may be local or a URL (``gs://...``) that the segmenter's
``opener`` reaches (``corpusflow.io.opener``; the pipelines pass one backed by
Beam's filesystems); remote directories are copied to a local temporary
directory once per worker in ``setup()``. Nothing is ever fetched from a model hub.

A neural ``config.json`` names Python callables that LTP imports and calls
(``_ltp_target_``). Unless ``trust_model_code=True`` (``--trust_model_code``),
a config is refused before anything is imported or called when any
``_ltp_target_``/``_target_`` key anywhere in it names something other than
LTP's own model classes (torch modules defined in ``ltp_core.models``, and its
backbone builder ``ltp_core.models.utils.load_transformers``), or when it
carries a transformers ``auto_map`` (remote code). ``pytorch_model.bin`` is a
pickle: torch >= 2.6 loads it with ``weights_only=True`` (no code runs); an
older torch is refused without the flag.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from itertools import accumulate, pairwise
from typing import Any, Optional, Sequence

from corpusflow.io.opener import LOCAL, Opener, join as join_path
from corpusflow.segment.base import Segmenter, Span, char_spans, words_to_spans

CONFIG_NAME = "config.json"
NEURAL_WEIGHTS_NAME = "pytorch_model.bin"

# Longer sentences are not segmented: they fall back to characters, counted.
DEFAULT_MAX_CHARS = 20_000
# LTP's neural pipeline truncates input at 512 tokens ([CLS]/[SEP] included) and
# then stretches the last word to the end of the sentence; pieces are kept below
# that (a CJK character is at most one token) by cutting long runs into windows.
NEURAL_WINDOW_CHARS = 500

# Whitespace is never part of a word: the perceptron glues trailing spaces onto
# words ("我 爱 " -> one word) and drops leading ones, so text is split at
# whitespace runs first and each run becomes its own span.
_WS = re.compile(r"\s")
_RUNS = re.compile(r"\s+|\S+")
_UNPLANNED: Any = object()

_STOP = (KeyboardInterrupt, SystemExit, GeneratorExit)


def is_remote(path: str) -> bool:
    """True for URLs (``gs://``, ``s3://``, ...): only the opener reaches them, and they are copied locally."""
    return "://" in path and not path.startswith("file://")


def _package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------
# Model directories: listing, hashing, copying, checking.


def _list_files(model_dir: str, opener: Opener) -> list[tuple[str, str]]:
    """``(relative posix path, full path)`` of every file under ``model_dir``, sorted."""
    return [(rel, join_path(model_dir, rel)) for rel in opener.list_files(model_dir)]


def hash_model_dir(model_dir: str, opener: Opener = LOCAL) -> str:
    """sha256 over the directory's files: sorted relative paths, sizes and bytes."""
    h = hashlib.sha256()
    for rel, full in _list_files(model_dir, opener):
        with opener.open(full) as f:
            data_h = hashlib.sha256()
            size = 0
            for chunk in iter(lambda: f.read(1 << 20), b""):
                data_h.update(chunk)
                size += len(chunk)
        # Path and size framed so no two different directories hash alike.
        h.update(rel.encode("utf-8") + b"\x00" + size.to_bytes(8, "big") + data_h.digest())
    return h.hexdigest()


def copy_model_dir(src: str, dst: str, opener: Opener = LOCAL) -> None:
    """Copy every file under ``src`` (local, or a URL ``opener`` reaches) into local ``dst``."""
    for rel, full in _list_files(src, opener):
        target = os.path.join(dst, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with opener.open(full) as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


# --------------------------------------------------------------------------
# Code named by a model directory.

TRUST_FLAG = "--trust_model_code"
# Keys whose value names code to import and call: LTP's ``instantiate`` reads
# ``_ltp_target_``; ``_target_`` is Hydra's spelling (LTP's training configs).
_TARGET_KEYS = ("_ltp_target_", "_target_")
# transformers' pointer to code shipped beside a model ("remote code").
_CODE_MAP_KEYS = ("auto_map",)
_LTP_TARGET = re.compile(r"ltp_core\.models(?:\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
# ltp_core.models.utils.instantiate holds LTP's resolver itself (``find_callable``,
# ``instantiate``): naming it would reach any callable by another key.
_NEVER = ("ltp_core.models.utils.instantiate",)
_BACKBONE_BUILDER = "ltp_core.models.utils.load_transformers"


class UntrustedModelCode(ValueError):
    """A model directory names code outside LTP's own model classes."""


def _refusal(cfg_path: str, where: str, what: Any, why: str) -> UntrustedModelCode:
    return UntrustedModelCode(
        f"LTP model config {cfg_path!r} names {where} = {what!r}, {why}; loading it would import and "
        f"run that code: pass {TRUST_FLAG} (trust_model_code=True) only for a model directory you trust")


def _code_keys(obj: Any, where: str = "config") -> list[tuple[str, Any]]:
    """``(key path, value)`` of every target or code-map key, at any depth (dicts and lists)."""
    found: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{where}.{k}"
            if k in _TARGET_KEYS or k in _CODE_MAP_KEYS:
                found.append((path, v))
            found += _code_keys(v, path)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _code_keys(v, f"{where}[{i}]")
    return found


def check_model_code(config: dict, cfg_path: str) -> None:
    """Refuse a config naming code outside ``ltp_core.models`` (nothing is imported).

    Raises ``UntrustedModelCode`` (a ValueError; one line naming the file, the
    key, the target and the flag).
    """
    for where, value in _code_keys(config):
        if where.rsplit(".", 1)[-1] in _CODE_MAP_KEYS:
            raise _refusal(cfg_path, where, value, "transformers code shipped with the model")
        if not isinstance(value, str) or not _LTP_TARGET.match(value) or \
                any(value == n or value.startswith(n + ".") for n in _NEVER):
            raise _refusal(cfg_path, where, value, "which is not one of LTP's own model classes")


def _resolve(target: str) -> Any:
    """What LTP's ``find_callable`` returns for ``target``, without calling it.

    Same search (longest importable module prefix, then attributes); only
    called for targets ``check_model_code`` passed, so only ``ltp_core``
    modules are imported.
    """
    module_path, attrs = target, []
    while True:
        module_path, attr = module_path.rsplit(".", 1)
        attrs.insert(0, attr)
        try:
            obj = importlib.import_module(module_path)
            break
        except ImportError:
            if "." not in module_path:
                raise
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


def check_resolved_model_code(config: dict, cfg_path: str) -> None:
    """After ``check_model_code``: each target must resolve to a torch module class
    defined in ``ltp_core.models`` or to LTP's backbone builder, not to something
    an LTP module merely imported (``ltp_core.models.ltp_model.torch.save``).
    Needs ltp and torch importable."""
    import torch

    from ltp_core.models.utils import load_transformers

    for where, target in _code_keys(config):
        try:
            obj = _resolve(target)
        except (ImportError, AttributeError, ValueError) as e:
            raise ValueError(f"LTP model config {cfg_path!r}: {where} = {target!r} cannot be found "
                             f"({type(e).__name__}: {e})") from None
        own_class = (isinstance(obj, type) and issubclass(obj, torch.nn.Module)
                     and obj.__module__.startswith("ltp_core.models."))
        if not (own_class or obj is load_transformers):
            raise _refusal(cfg_path, where, target,
                           f"which is {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)!s}, "
                           "not one of LTP's own model classes")


def read_config(model_dir: str, trust_model_code: bool = False, opener: Opener = LOCAL) -> dict:
    """Read and check ``config.json`` of a local or remote model directory.

    Raises FileNotFoundError (no directory, no config.json, missing model file)
    or ValueError (unreadable or malformed config) naming the path, and
    ``UntrustedModelCode`` for a config naming code outside LTP's own model
    classes unless ``trust_model_code`` (see ``check_model_code``).
    """
    if is_remote(model_dir):
        cfg_path = model_dir.rstrip("/") + "/" + CONFIG_NAME
        if not _list_files(model_dir, opener):
            raise FileNotFoundError(f"LTP model directory {model_dir!r} does not exist or is empty")
        if not opener.exists(cfg_path):
            raise FileNotFoundError(
                f"LTP model directory {model_dir!r} has no {CONFIG_NAME} "
                "(expected LTP's model directory layout)")
        exists = opener.exists
    else:
        if not os.path.exists(model_dir):
            raise FileNotFoundError(f"LTP model directory {model_dir!r} does not exist")
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"LTP model directory {model_dir!r} is not a directory")
        cfg_path = os.path.join(model_dir, CONFIG_NAME)
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(
                f"LTP model directory {model_dir!r} has no {CONFIG_NAME} "
                "(expected LTP's model directory layout)")
        exists = os.path.isfile
    try:
        with opener.open(cfg_path) as f:
            config = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"LTP model config {cfg_path!r} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("nerual"), bool):
        raise ValueError(
            f"LTP model config {cfg_path!r} is corrupt: it needs a boolean \"nerual\" key "
            "(LTP's spelling; false for perceptron models, true for neural ones)")
    if not trust_model_code:
        check_model_code(config, cfg_path)

    def join(name: str) -> str:
        if is_remote(model_dir):
            return model_dir.rstrip("/") + "/" + name
        return os.path.join(model_dir, name)

    if config["nerual"]:
        for key in ("model", "vocabs"):
            if not isinstance(config.get(key), dict):
                raise ValueError(f"LTP model config {cfg_path!r} is corrupt: neural model lacks {key!r}")
        if "cws" not in config["vocabs"] and "cws" not in config["model"].get("heads", {}):
            raise ValueError(f"LTP model config {cfg_path!r} has no word segmentation (cws) task")
        if not exists(join(NEURAL_WEIGHTS_NAME)):
            raise FileNotFoundError(
                f"LTP neural model directory {model_dir!r} has no {NEURAL_WEIGHTS_NAME}")
    else:
        tasks = config.get("tasks")
        if not isinstance(tasks, dict) or not isinstance(tasks.get("cws"), str):
            raise ValueError(
                f"LTP model config {cfg_path!r} is corrupt or has no word segmentation model: "
                "a perceptron model needs \"tasks\": {\"cws\": \"<file>\"}")
        if not exists(join(tasks["cws"])):
            raise FileNotFoundError(
                f"LTP model directory {model_dir!r}: cws model file {tasks['cws']!r} "
                f"named in {CONFIG_NAME} does not exist")
    return config


# Run in a child process: ltp_extension aborts the whole process (a Rust panic in
# a loader thread, not a Python exception) on a truncated model file.
_TRIAL_LOAD = "import sys, ltp_extension.perceptron as p; p.CWSModel.load(sys.argv[1])"


def check_perceptron_file(path: str, timeout: float = 300.0) -> None:
    """Raise ValueError unless ``path`` loads as a perceptron CWS model."""
    proc = subprocess.run([sys.executable, "-c", _TRIAL_LOAD, path], check=False,
                          capture_output=True, text=True, timeout=timeout, errors="replace")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        # The useful part is the first error line, before Rust's backtrace.
        why = next((ln for ln in lines if "Error" in ln or "panicked" in ln or "called" in ln),
                   lines[-1] if lines else f"exit status {proc.returncode}")
        raise ValueError(
            f"LTP cws model file {path!r} is corrupt or not an LTP perceptron model "
            f"(loading it failed: {why[:300]})")


def _neural_imports() -> Any:
    """Import ``ltp`` for a neural model, or explain what to install."""
    hint = ("LTP neural models need torch, transformers<5 and ltp: "
            "pip install torch==2.13.0 && pip install ltp==4.2.14 'transformers<5' "
            "(install torch first to get the CPU wheel); perceptron models need only ltp-extension")
    tv = _package_version("transformers")
    if tv is not None and int(tv.split(".")[0]) >= 5:
        raise ImportError(f"found transformers {tv}, which LTP 4.2 cannot use "
                          f"(it calls batch_encode_plus, removed in 5.x). {hint}")
    if "transformers" not in sys.modules:
        # LTP is torch-only, but transformers would also import TensorFlow when it
        # is installed (corpusflow[train]): ~14 s and hundreds of MB per worker.
        os.environ.setdefault("USE_TF", "0")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import ltp
    except ImportError as e:
        raise ImportError(f"{hint} ({e})") from e
    return ltp


def read_user_dict(path: str, opener: Opener = LOCAL) -> list[tuple[str, Optional[int]]]:
    """Words of a jieba-style user dictionary: ``word [freq] [tag]`` per line."""
    with opener.open(path) as f:
        text = f.read().decode("utf-8-sig")
    out: list[tuple[str, Optional[int]]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        out.append((parts[0], freq))
    return out


# --------------------------------------------------------------------------
# The segmenter.


class LTPSegmenter(Segmenter):
    """LTP word segmentation (perceptron or neural model directory).

    Cheap to construct and to pickle: the model is loaded by ``setup()`` (once per
    worker, from ``DoFn.setup``) and never pickled. Call ``validate()`` on the
    driver before the pipeline starts to turn a bad model path into an error then.

    Args:
        model_dir: LTP model directory: local, or a URL (``gs://``) that ``opener`` reaches.
        batch_size: sentences per backend call (neural: per forward pass).
        device: neural models only: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        user_dict: optional word list (jieba format: ``word [freq] [tag]``); words
            are joined after segmentation with LTP's own ``Hook``.
        max_chars: longer sentences fall back to characters (counted).
        parallelism: let the perceptron use all cores for a batch (rayon). Off by
            default: a Beam worker already runs one process or thread per core.
        trust_model_code: load a neural model whose config.json names code
            outside LTP's own model classes (refused by default: loading runs it).
        opener: reads the model directory and user dictionary (``corpusflow.io.opener``;
            default: local files only).
    """

    name = "ltp"

    def __init__(self, model_dir: str, batch_size: int = 256, device: str = "cpu",
                 user_dict: Optional[str] = None, max_chars: int = DEFAULT_MAX_CHARS,
                 parallelism: bool = False, trust_model_code: bool = False,
                 opener: Opener = LOCAL) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.device = device
        self.user_dict = user_dict
        self.max_chars = max_chars
        self.parallelism = parallelism
        self.trust_model_code = trust_model_code
        # Reads the model directory and user dictionary (URLs too, if it reaches them).
        self.opener = opener
        self._identity: Optional[dict] = None
        self._config: Optional[dict] = None
        # Loaded state (per worker, never pickled).
        self._model: Any = None
        self._neural = False
        self._hook: Any = None

    # -- lifecycle ---------------------------------------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_model=None, _hook=None, _neural=False)
        return state

    @property
    def kind(self) -> str:
        """``perceptron`` or ``neural`` (reads config.json)."""
        if self._config is None:
            self._config = read_config(self.model_dir, self.trust_model_code, self.opener)
        return "neural" if self._config["nerual"] else "perceptron"

    def validate(self, load: bool = True) -> None:
        """Check the model directory (and user dictionary) before a pipeline starts.

        Raises FileNotFoundError/ValueError naming the path and the problem, or
        ImportError when a neural model's packages are missing. With ``load`` the
        model is also loaded once (in a child process for perceptron models,
        whose loader aborts the process on a corrupt file) and released.
        """
        self._config = read_config(self.model_dir, self.trust_model_code, self.opener)
        if self.user_dict is not None:
            if not self.opener.exists(self.user_dict):
                raise FileNotFoundError(f"user dictionary {self.user_dict!r} does not exist")
            read_user_dict(self.user_dict, self.opener)
        if self._config["nerual"]:
            _neural_imports()
        elif importlib.util.find_spec("ltp_extension") is None:
            raise ImportError("LTP perceptron models need ltp-extension: "
                              "pip install ltp-extension==0.1.13 (or corpusflow[ltp])")
        if not load:
            return
        if self._config["nerual"]:
            loaded = self._model is not None
            self.setup()
            if not loaded:
                self.teardown()
        else:
            local, tmp = self._localize()
            try:
                check_perceptron_file(os.path.join(local, self._config["tasks"]["cws"]))
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)

    def check(self) -> dict:
        """The driver's pre-flight without keeping the model: ``validate()``
        proved it loads (in a child process for perceptrons) and released it.
        Loading it here again would keep ~300 MB in the driver, which on a
        local run is also the worker of every stage."""
        self.validate()
        return self.identity()

    def _localize(self) -> tuple[str, Optional[str]]:
        """A local directory holding the model, and the temp dir to delete later."""
        if not is_remote(self.model_dir):
            return self.model_dir, None
        tmp = tempfile.mkdtemp(prefix="corpusflow-ltp-")
        try:
            copy_model_dir(self.model_dir, tmp, self.opener)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp, tmp

    def setup(self) -> None:
        """Load the model once (idempotent); copies a remote directory first."""
        if self._model is not None:
            return
        config = read_config(self.model_dir, self.trust_model_code, self.opener)
        self._config = config
        local, tmp = self._localize()
        try:
            if config["nerual"]:
                self._model = self._load_neural(local)
                self._neural = True
            else:
                from ltp_extension.perceptron import CWSModel

                # Loaded in-process: validate() on the driver already proved the
                # file loads (a corrupt one would abort this worker).
                self._model = CWSModel.load(os.path.join(local, config["tasks"]["cws"]))
                self._neural = False
        finally:
            # Both kinds hold everything in memory once loaded.
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        if self.user_dict:
            from ltp_extension.algorithms import Hook

            hook = Hook()
            for word, freq in read_user_dict(self.user_dict, self.opener):
                # LTP's own add_words() default weight is 2.
                hook.add_word(word, freq if freq is not None else 2)
            self._hook = hook if len(hook) else None

    def _load_neural(self, local: str) -> Any:
        ltp = _neural_imports()
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {self.device!r} requested but torch sees no CUDA device")
        if not self.trust_model_code:
            cfg_path = os.path.join(local, CONFIG_NAME)
            with open(cfg_path, encoding="utf-8") as f:
                # The local copy is what LTP reads: check that, not the original.
                config = json.load(f)
            check_model_code(config, cfg_path)
            check_resolved_model_code(config, cfg_path)
            if tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
                raise UntrustedModelCode(
                    f"LTP model {os.path.join(local, NEURAL_WEIGHTS_NAME)!r} is a pickle and torch "
                    f"{torch.__version__} (< 2.6) loads it with code execution allowed: upgrade torch, "
                    f"or pass {TRUST_FLAG} (trust_model_code=True) for a model directory you trust")
        # LTP prints "Loading weights from local directory" on every load.
        with contextlib.redirect_stdout(io.StringIO()):
            model = ltp.LTP(local)
        if "cws" not in model.supported_tasks:
            raise ValueError(f"LTP model {self.model_dir!r} has no word segmentation (cws) task")
        return model.to(torch.device(device))

    def teardown(self) -> None:
        """Release the model (``DoFn.teardown``)."""
        self._model = None
        self._hook = None

    # -- segmentation -----------------------------------------------------

    def segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        # Load outside the base class's fallback: a model that cannot load must
        # fail the worker, not turn every sentence into characters.
        self.setup()
        return super().segment_batch(sentences)

    def _predict(self, pieces: list[str]) -> list[list[str]]:
        if self._neural:
            return self._model.pipeline(pieces, tasks=["cws"]).cws
        return self._model.batch_predict(pieces, parallelism=self.parallelism)

    def _predict_robust(self, pieces: list[str]) -> list[Optional[list[str]]]:
        """Predict, isolating failing pieces by bisection (``None`` = failed).

        Bisection instead of one call per piece: one odd sentence in a batch of
        256 costs ~2*log2(256) extra calls, not 256 (a neural forward pass each).
        """
        try:
            out: list[Optional[list[str]]] = list(self._predict(pieces))
            if len(out) != len(pieces):
                raise RuntimeError("backend returned a different number of results")
            return out
        except BaseException as e:  # Rust panics arrive as BaseException subclasses
            if isinstance(e, _STOP):
                raise
            if len(pieces) == 1:
                return [None]
            mid = len(pieces) // 2
            return self._predict_robust(pieces[:mid]) + self._predict_robust(pieces[mid:])

    def _word_lengths(self, piece: str, words: list[str]) -> list[int]:
        lengths = list(map(len, words))
        if sum(lengths) != len(piece):
            # The backend dropped or changed characters: map words back.
            spans = words_to_spans(piece, words)
            lengths = [b - a for a, b in spans]
            words = [piece[a:b] for a, b in spans]
        if self._hook is not None:
            hooked = self._hook.hook(piece, words)
            hooked_lengths = list(map(len, hooked))
            if sum(hooked_lengths) == len(piece):
                lengths = hooked_lengths
        return lengths

    def _segment_batch(self, sentences: Sequence[str]) -> list[list[Span]]:
        self.setup()
        # Repeated sentences (boilerplate, dupes not yet removed) are segmented once.
        index: dict[str, int] = {}
        order = [index.setdefault(s, len(index)) for s in sentences]
        unique = list(index)
        window = NEURAL_WINDOW_CHARS if self._neural else self.max_chars
        pieces: dict[str, int] = {}
        plans = [self._plan(s, window, pieces) for s in unique]
        piece_list = list(pieces)
        results = self._predict_pieces(piece_list)

        spans_by_unique: list[Optional[list[Span]]] = []
        for plan in plans:
            spans: Optional[list[Span]] = None if plan is None else []
            a = 0
            for item in plan or ():
                if item < 0:  # a whitespace run: a word of its own
                    spans.append((a, a - item))
                    a -= item
                    continue
                words = results[item]
                if words is None:  # one failed piece: the whole sentence falls back
                    spans = None
                    break
                ends = list(accumulate(self._word_lengths(piece_list[item], words), initial=a))
                spans.extend(pairwise(ends))
                a = ends[-1]
            spans_by_unique.append(spans)

        out: list[list[Span]] = []
        failed = 0
        used = [False] * len(unique)
        for s, i in zip(sentences, order):
            got = spans_by_unique[i]
            if got is None:
                failed += 1
                out.append(char_spans(s))
            elif used[i]:
                # A repeat gets its own list: callers may mutate what they get.
                out.append(list(got))
            else:
                used[i] = True
                out.append(got)
        # Counted only once the whole batch succeeded, so the base class's
        # per-sentence retry after an exception cannot count a sentence twice.
        self.fallbacks += failed
        return out

    def block_word_starts(self, docs: Sequence[Sequence[str]]) -> list[Optional[Any]]:
        """Per document, its word starts in ``"\\n".join(sentences)`` (the offsets
        ``InstanceBuilder.prepare`` derives from ``segment_batch`` spans, end
        offset included), from one batched prediction over the whole block.

        No span tuples are built, which is most of this backend's Python cost.
        Whitespace runs are words of their own and longer runs are cut into
        windows, exactly as ``segment_batch`` does. ``None`` for a document that
        needs the general path: an empty sentence or one over ``max_chars``, a
        prediction that failed or does not cover its piece, or a user
        dictionary; the caller then calls ``segment_batch`` (which also counts
        fallbacks).
        """
        import numpy as np

        self.setup()
        if self._hook is not None:
            return [None] * len(docs)
        window = NEURAL_WINDOW_CHARS if self._neural else self.max_chars
        pieces: dict[str, int] = {}  # each distinct piece is predicted once
        # Per distinct sentence, its plan: piece indices, and -n for a whitespace
        # run of n characters (a word of its own, as segment_batch makes it);
        # None when the sentence needs the general path.
        plans: dict[str, Optional[list[int]]] = {}
        doc_ok = []
        for sentences in docs:
            ok = bool(sentences)
            for s in sentences if ok else ():
                plan = plans.get(s, _UNPLANNED)
                if plan is _UNPLANNED:
                    plan = plans[s] = self._plan(s, window, pieces) if s else None
                if plan is None:
                    ok = False
                    break
            doc_ok.append(ok)
        unique = list(pieces)
        lengths: list[Optional[list[int]]] = [None] * len(unique)
        for i, words in enumerate(self._predict_pieces(unique)):
            if words is not None:
                lens = list(map(len, words))
                if sum(lens) == len(unique[i]):
                    lengths[i] = lens
        out: list[Optional[Any]] = []
        for sentences, ok in zip(docs, doc_ok):
            flat: Optional[list[int]] = [] if ok else None
            for j, s in enumerate(sentences if ok else ()):
                if j:
                    flat.append(1)  # the "\n" separator is a word of its own
                for item in plans[s]:
                    if item < 0:
                        flat.append(-item)
                        continue
                    lens = lengths[item]
                    if lens is None:
                        flat = None
                        break
                    flat.extend(lens)
                if flat is None:
                    break
            out.append(None if flat is None else np.fromiter(
                accumulate(flat, initial=0), dtype=np.int64, count=len(flat) + 1))
        return out

    def _plan(self, s: str, window: int, pieces: dict[str, int]) -> Optional[list[int]]:
        """How one sentence is segmented, shared by both paths so they always agree.

        Piece indices into ``pieces`` (each distinct piece is predicted once), and
        ``-n`` for a whitespace run of n characters; None when the sentence is over
        ``max_chars`` (it falls back to characters).
        """
        n = len(s)
        if n > self.max_chars:
            return None
        if n <= window and not _WS.search(s):
            return [pieces.setdefault(s, len(pieces))]
        plan = []
        for m in _RUNS.finditer(s):
            a, b = m.span()
            if s[a].isspace():
                plan.append(a - b)
                continue
            for w in range(a, b, window):
                plan.append(pieces.setdefault(s[w:min(w + window, b)], len(pieces)))
        return plan

    def _predict_pieces(self, pieces: list[str]) -> list[Optional[list[str]]]:
        """Words per piece (None: failed), in batches of ``batch_size``."""
        # Neural: similar lengths per forward pass, as LTP pads each batch to its longest.
        todo = (sorted(range(len(pieces)), key=lambda i: len(pieces[i])) if self._neural
                else list(range(len(pieces))))
        results: list[Optional[list[str]]] = [None] * len(pieces)
        for k in range(0, len(todo), self.batch_size):
            ids = todo[k:k + self.batch_size]
            for i, words in zip(ids, self._predict_robust([pieces[i] for i in ids])):
                results[i] = words
        return results

    # -- manifest ----------------------------------------------------------

    def identity(self) -> dict:
        """``{"name": "ltp", "version", "model_hash"}``.

        ``version`` is ``ltp-extension==X`` for perceptron models and ``ltp==X``
        for neural ones; ``model_hash`` is ``hash_model_dir`` of the directory,
        with the user dictionary's bytes folded in when one is given.
        """
        if self._identity is None:
            if self.kind == "neural":
                version = f"ltp=={_package_version('ltp')}"
            else:
                version = f"ltp-extension=={_package_version('ltp-extension')}"
            model_hash = hash_model_dir(self.model_dir, self.opener)
            if self.user_dict:
                h = hashlib.sha256(model_hash.encode("ascii") + b"\x00user_dict\x00")
                with self.opener.open(self.user_dict) as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                model_hash = h.hexdigest()
            self._identity = {"name": "ltp", "version": version, "model_hash": model_hash}
        return dict(self._identity)
