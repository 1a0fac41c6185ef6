"""Segmenters by name, and the segment stage's options.

``make_segmenter("jieba" | "ltp" | "jieba_rs", **options)`` builds a backend
from its constructor's arguments; ``make_from_config(SegmentConfig)`` builds it
from the command-line options, through each backend's declared flag mapping
(``Backend.flags``), so that mapping lives here only. ``check_in_driver`` is
what the build runs before any stage: validate, prove the backend loads, and
return its identity for the stage hash and the manifest.

Backends are imported only when asked for, so choosing jieba never imports
LTP (or torch), and the perceptron LTP path never imports jieba.

Adding a backend: a ``Segmenter`` subclass in its own module, and one
``Backend`` line in ``_BACKENDS`` (plus, if it takes a new flag, one field on
``SegmentConfig``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from typing import Any, ClassVar, Mapping, Optional

from corpusflow.config import Config, ConfigError, option
from corpusflow.io.opener import LOCAL, Opener
from corpusflow.segment.base import Segmenter


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where a backend lives and which ``SegmentConfig`` fields it takes."""

    module: str
    cls: str
    # SegmentConfig field -> constructor argument (None values are not passed).
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Fields that must be set, with the message when one is not.
    required: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The constructor argument that takes the file opener (``corpusflow.io.opener``),
    # for backends that read model files, which may be URLs (``gs://``).
    opener_arg: Optional[str] = None


_LTP_TRAIN = "(train one with `python -m corpusflow.segment.train`)"

_BACKENDS: dict[str, Backend] = {
    "jieba": Backend("corpusflow.segment.jieba_backend", "JiebaSegmenter",
                     {"user_dict": "user_dict"}),
    "ltp": Backend("corpusflow.segment.ltp_backend", "LTPSegmenter",
                   {"ltp_model": "model_dir", "segment_batch_size": "batch_size",
                    "ltp_device": "device",
                    # Refused by default: a neural model's config.json names code LTP runs.
                    "trust_model_code": "trust_model_code", "user_dict": "user_dict"},
                   {"ltp_model": f"needs a model directory: --ltp_model DIR {_LTP_TRAIN}"},
                   opener_arg="opener"),
    "jieba_rs": Backend("corpusflow.segment.jieba_rs_backend", "JiebaRsSegmenter",
                        {"user_dict": "user_dict"}),
}
SEGMENTERS: tuple[str, ...] = tuple(_BACKENDS)

GROUP = "corpusflow: word segmentation (stage segment)"
_DEVICE_RE = re.compile(r"cpu|auto|cuda(:\d+)?")


@dataclasses.dataclass(frozen=True)
class SegmentConfig(Config):
    """The segment stage's options. Hashed: the backend's name and user
    dictionary (with the backend's ``identity()``, which covers the model);
    batch and block sizes and the device do not change the words."""

    GROUP: ClassVar[str] = GROUP

    segmenter: str = option("jieba", "jieba (exact jieba 0.42.1), jieba_rs (rjieba) or ltp "
                                     "(needs --ltp_model).", choices=SEGMENTERS)
    ltp_model: "str | None" = option(
        None, "LTP model directory (perceptron or neural), local or gs://.",
        nullable=True, hashed=False, path=True, manifest=True)
    ltp_device: str = option(
        "auto", "neural LTP models: cpu, cuda, cuda:N, or auto (a GPU when torch sees one); "
                "perceptron models ignore it.", hashed=False)
    trust_model_code: bool = option(
        False, "Let a neural LTP model's config.json name classes outside LTP's own model "
               "classes (loading it then runs that code).", kind="flag", hashed=False)
    user_dict: "str | None" = option(
        None, "jieba-format user dictionary added to the segmenter.", nullable=True,
        path=True)
    segment_batch_size: int = option(
        256, "Sentences per segmenter call (LTP batch_predict / neural forward pass).",
        lo=1, hashed=False)
    segment_block_sentences: int = option(
        4096, "Documents are segmented in blocks of about this many sentences (keeps the model "
              "cache-warm; output does not depend on it).", lo=1, hashed=False)

    def check(self) -> None:
        if not _DEVICE_RE.fullmatch(self.ltp_device or ""):
            raise ConfigError(f"--ltp_device must be cpu, cuda, cuda:N or auto, "
                              f"got {self.ltp_device!r}")


def _backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown segmenter {name!r}; choose one of: {', '.join(SEGMENTERS)}")
    return _BACKENDS[name]


def _backend_class(name: str) -> type:
    b = _backend(name)
    return getattr(importlib.import_module(b.module), b.cls)


def _aliases(name: str) -> dict[str, str]:
    """Flag names that differ from the constructor argument they feed."""
    return {k: v for k, v in _backend(name).flags.items() if k != v}


def segmenter_options(name: str) -> tuple[str, ...]:
    """Option names ``make_segmenter(name, ...)`` accepts (flag names included)."""
    own = tuple(inspect.signature(_backend_class(name)).parameters)
    return own + tuple(_aliases(name))


def make_segmenter(name: str, **options: Any) -> Segmenter:
    """A segmenter by name; options are its constructor's arguments.

    Options whose value is None are dropped, so a caller can pass every flag it
    has (``user_dict=args.user_dict, ltp_model=args.ltp_model``) and only the
    ones set reach the backend; a set option the backend does not take is an
    error. A backend's flag names are accepted for the arguments they feed
    (``ltp_model`` for LTP's ``model_dir``). The result is not loaded yet: call
    ``validate()`` before starting a pipeline and ``setup()`` in each worker.
    """
    backend = _backend(name)
    cls = _backend_class(name)
    opts = {k: v for k, v in options.items() if v is not None}
    for alias, real in _aliases(name).items():
        if alias in opts:
            if real in opts:
                raise ValueError(f"segmenter {name!r}: give {alias!r} or {real!r}, not both")
            opts[real] = opts.pop(alias)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise ValueError(f"segmenter {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(accepted))}")
    for flag, why in backend.required.items():
        if backend.flags[flag] not in opts:
            raise ValueError(f"segmenter {name!r} {why}")
    return cls(**opts)


def constructor_options(cfg: SegmentConfig) -> dict[str, Any]:
    """The backend's constructor arguments from the options (unset ones left out)."""
    backend = _backend(cfg.segmenter)
    out = {}
    for flag, arg in backend.flags.items():
        value = getattr(cfg, flag)
        if value is not None and value != "":  # an empty path is no path
            out[arg] = value
    return out


def make_from_config(cfg: SegmentConfig, opener: Opener = LOCAL) -> Segmenter:
    """The configured segmenter, not loaded yet (picklable: a DoFn carries it).

    ``opener`` reads its model files where the backend has any (the pipelines pass
    one that reaches ``gs://``; the default reads local files only).
    """
    opts = constructor_options(cfg)
    arg = _backend(cfg.segmenter).opener_arg
    if arg is not None:
        opts[arg] = opener
    return make_segmenter(cfg.segmenter, **opts)


def check_in_driver(cfg: SegmentConfig, opener: Opener = LOCAL) -> dict:
    """Before any stage: build, validate and prove the segmenter loads, without
    keeping a costly model loaded in the driver (see ``Segmenter.check``).

    Returns ``identity()``. Raises ValueError, FileNotFoundError or ImportError
    with one line that does not name the flag (the caller prefixes
    ``--segmenter NAME: ``).
    """
    return make_from_config(cfg, opener).check()
