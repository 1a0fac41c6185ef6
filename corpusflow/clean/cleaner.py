"""The cleaning stage: normalise a document, then filter it.

``Cleaner`` is what a Beam DoFn wraps: construct it with a ``CleanConfig`` at
pipeline-build time (it pickles: no OpenCC object is held until ``setup``),
call ``setup()`` in ``DoFn.setup`` to load OpenCC once per worker, and
``clean(doc, inc)`` per element.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Optional, Union

from corpusflow.clean import filters, normalize
from corpusflow.config import Config, ConfigError, option
from corpusflow.counters import Inc, register
from corpusflow.document import Document, Reject
from corpusflow.io.opener import LOCAL, Opener
from corpusflow.pii.step import MODES as PII_MODES, REASON as PII_REASON, apply_pii, redacted_excerpt
from corpusflow.quality.step import REASON as QUALITY_REASON, apply_quality

STAGE = "clean"

COUNTERS = register(
    ["clean:kept", "clean:rejected:clean_error"]
    + [f"clean:filtered:{r}" for r in filters.FILTER_REASONS])


@dataclasses.dataclass(frozen=True)
class CleanConfig(Config):
    """Cleaning options; the defaults are the production settings.

    The filters' thresholds are in ``filters``: one config per filter config
    class (``corpusflow.clean.filters``). ``from_options`` builds the whole;
    ``of(**values)`` does the same from keyword values (tests, scripts).
    """

    GROUP: ClassVar[str] = filters.GROUP

    t2s: bool = option(True, "Convert Traditional to Simplified Chinese (OpenCC t2s).",
                       kind="bool")
    pii: str = option("redact", "Personal data (IDs, phones, e-mails, cards...): replace with "
                                "typed placeholders, tag spans in meta.pii, drop the document, "
                                "or leave it.", choices=PII_MODES)
    # Hashed as the path; the build adds the model's digest (its bytes shape the stage).
    quality_model: Optional[str] = option(
        None, "Quality model directory (python -m corpusflow.quality.train): adds "
              "meta.quality.score.", metavar="DIR", nullable=True, path=True)
    min_quality: Optional[float] = option(
        None, "Documents whose quality score is below this are filtered as low_quality "
              "(0..1; needs --quality_model).", type=float, lo=0, hi=1, nullable=True)
    opencc_config: str = "t2s"            # OpenCC config used when t2s is on
    quality_signals: bool = True          # meta.quality signals (corpusflow.quality)
    filters: tuple = dataclasses.field(default_factory=filters.filter_configs)

    @classmethod
    def from_options(cls, opts: "Mapping[str, Any] | Any") -> "CleanConfig":
        """The whole config, the filters' thresholds included, from parsed options."""
        own = super().from_options(opts)
        return dataclasses.replace(own, filters=filters.filter_configs(opts))

    @classmethod
    def of(cls, **values: Any) -> "CleanConfig":
        """The config with ``values`` set, own fields and filter thresholds alike
        (``CleanConfig.of(t2s=False, max_chars=30)``); an unknown name is a TypeError."""
        own_names = {f.name for f in dataclasses.fields(cls)} - {"filters"}
        known = own_names | {f.name for c in filters.config_classes()
                             for f in dataclasses.fields(c)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"CleanConfig has no option(s) {', '.join(unknown)}")
        configs = tuple(dataclasses.replace(c, **{k: v for k, v in values.items()
                                                  if k in {f.name for f in dataclasses.fields(c)}})
                        for c in filters.filter_configs())
        return cls(**{k: v for k, v in values.items() if k in own_names}, filters=configs)

    def threshold(self, name: str) -> Any:
        """A filter threshold by field name (``cfg.threshold("min_chars")``)."""
        for c in self.filters:
            if name in {f.name for f in dataclasses.fields(c)}:
                return getattr(c, name)
        raise KeyError(name)

    def validate(self) -> None:
        """Own options, then every filter config's."""
        super().validate()
        for c in self.filters:
            c.validate()

    def check(self) -> None:
        if self.min_quality is not None and not self.quality_model:
            raise ConfigError("--min_quality needs --quality_model DIR")

    def to_json(self) -> dict[str, Any]:
        """The hashed options, the filters' thresholds included."""
        out = super().to_json()
        for c in self.filters:
            out.update(c.to_json())
        return out

    def manifest_json(self) -> dict[str, Any]:
        """What ``manifest.json`` records, the filters' thresholds included."""
        out = super().manifest_json()
        for c in self.filters:
            out.update(c.manifest_json())
        return out


def clean_option_classes() -> tuple[type, ...]:
    """Every config class whose options the clean stage takes, in ``--help`` order."""
    return (CleanConfig,) + filters.config_classes()


#: ``clean_option_classes()`` of the built-in filters.
CLEAN_OPTION_CLASSES: tuple[type, ...] = clean_option_classes()


class Cleaner:
    """Normalises title and text of a ``Document`` and applies the filters.

    ``opener`` (``corpusflow.io.opener``) reads the quality model; the default
    reads local files only, the pipelines pass one that also reaches ``gs://``.
    """

    def __init__(self, config: Optional[CleanConfig] = None, opener: Opener = LOCAL) -> None:
        self.config = config or CleanConfig()
        self.opener = opener
        self._converter: Any = None
        self._quality_model: Any = None
        self._filters: Optional[filters.Plan] = None  # resolved on first use

    def setup(self) -> None:
        """Load OpenCC (when ``config.t2s``); calling it again does nothing."""
        if self.config.t2s and self._converter is None:
            self._converter = normalize.load_t2s(self.config.opencc_config)
        if self.config.quality_model and self._quality_model is None:
            from corpusflow.quality.model import load_model
            self._quality_model = load_model(self.config.quality_model, self.opener)

    def __getstate__(self) -> dict:
        # The OpenCC object is a native handle and does not pickle; a copy
        # loads its own in setup().
        state = self.__dict__.copy()
        state["_converter"] = None
        state["_quality_model"] = None  # loaded again in setup()
        state["_filters"] = None        # functions and configs: resolved again on use
        return state

    def clean(self, doc: Document, inc: Inc) -> Union[Document, Reject]:
        """Return the cleaned document, or a ``Reject`` (filtered, or clean_error).

        Normalisation counters are only counted when every rule succeeded, so a
        document that fails counts once, as ``clean:rejected:clean_error``.
        """
        if ((self.config.t2s and self._converter is None)
                or (self.config.quality_model and self._quality_model is None)):
            self.setup()  # direct (non-Beam) use without setup()
        cfg = self.config
        pending: list[str] = []
        try:
            text = normalize.normalize(doc.text, _Collect(pending), self._converter)
            title = normalize.normalize_title(doc.title, self._converter)
            if self._filters is None:
                self._filters = filters.plan(cfg.filters)
            keep, reason = filters.run_plan(self._filters, text, doc.text)
            meta: Optional[dict] = dict(doc.meta)
            if keep:
                # PII, then quality on the text as it will be kept (see
                # corpusflow.pii.step, corpusflow.quality.step).
                post = apply_pii(cfg.pii, title, text, meta, _Collect(pending))
                if post is None:
                    keep, reason = False, PII_REASON
                else:
                    title, text, meta = post
                    meta = apply_quality(text, meta, _Collect(pending), signals=cfg.quality_signals,
                                         model=self._quality_model, min_quality=cfg.min_quality)
                    if meta is None:
                        keep, reason = False, QUALITY_REASON
        except Exception as e:  # noqa: BLE001 - one bad document must not fail a job
            inc("clean:rejected:clean_error")
            return _error_reject(doc, e)
        for name in pending:
            inc(name)
        if not keep:
            inc(f"clean:filtered:{reason}")
            # The excerpt is of the input: that is what one needs to see to
            # judge the filter (an empty_after_clean text has nothing left).
            rej = Reject.for_doc(doc, stage=STAGE, reason=reason, kind="filtered")
            if reason == PII_REASON:  # rejects/ must not keep what the document was dropped for
                rej.excerpt = redacted_excerpt(rej.excerpt)
            return rej
        inc("clean:kept")
        return dataclasses.replace(doc, title=title, text=text, meta=meta)


def _error_reject(doc: Document, e: Exception) -> Reject:
    detail = f"{type(e).__name__}: {e}"[:200]
    if isinstance(doc.text, str):
        return Reject.for_doc(doc, stage=STAGE, reason="clean_error", kind="rejected",
                              detail=detail)
    # A malformed record (text not a str) must still become a Reject, not a crash.
    meta = doc.meta if isinstance(doc.meta, dict) else {}
    return Reject(stage=STAGE, reason="clean_error", kind="rejected", id=doc.id,
                  file=meta.get("file"), line=meta.get("line"), detail=detail)


class _Collect:
    """An ``Inc`` that remembers names, to count them only on success."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __call__(self, name: str, n: int = 1) -> None:
        self.names.extend([name] * n)
