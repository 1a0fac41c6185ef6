"""Options defined once, on the config dataclass that uses them.

A field made with ``option(...)`` carries everything about one command-line
option: its flag (``--`` + the field name), default, help text, choices, range
and whether it shapes the output (``hashed``). The build's parser, its range
checks, the stage hashes and the manifest are all generated from these fields,
so an option is added, renamed or re-bounded in exactly one place.

Pure standard library: the core stays importable without Beam.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, ClassVar, Iterator, Mapping, Optional, Sequence

_SPEC = "corpusflow.option"


class ConfigError(ValueError):
    """An option value out of range or inconsistent; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """What the command line knows about one field (see ``option``)."""

    help: str
    choices: Optional[tuple] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    kind: str = "value"         # value | bool (--x true|false) | flag (bare --x or --x false) | list
    type: Optional[type] = None  # argparse type; default: the default's type
    metavar: Optional[str] = None
    hashed: bool = True          # shapes the stage's output: part of its config hash
    nullable: bool = False       # None allowed (no range check then)
    path: bool = False           # a local path the driver makes absolute (workers run elsewhere)
    manifest: Optional[bool] = None  # recorded in manifest.json's config (default: when hashed)


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field that is also a command-line option (see ``Spec``)."""
    return dataclasses.field(default=default, metadata={_SPEC: Spec(help=help, **spec)})


def str2bool(value: "str | bool") -> bool:
    """Parse ``true/false`` style values (``--t2s false``)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def specs(cls: type) -> Iterator[tuple[str, Any, Spec]]:
    """``(name, default, spec)`` of every option field of a config class."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_SPEC)
        if spec is not None:
            yield f.name, f.default, spec


def _range_text(s: Spec) -> str:
    lo = "" if s.lo is None else f"{'(' if s.lo_open else '['}{_num(s.lo)}"
    if s.hi is None:
        return f"> {_num(s.lo)}" if s.lo_open else f">= {_num(s.lo)}"
    return f"in {lo}, {_num(s.hi)}]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_value(name: str, value: Any, s: Spec) -> None:
    """One option's range and choices; raises ``ConfigError`` naming ``--name``."""
    if value is None and (s.nullable or s.kind == "list"):
        return
    if s.choices is not None and s.kind != "list" and value not in s.choices:
        raise ConfigError(f"--{name} must be one of {', '.join(map(str, s.choices))}, "
                          f"got {value!r}")
    if s.lo is None and s.hi is None:
        return
    ok = True
    if s.lo is not None:
        ok = value > s.lo if s.lo_open else value >= s.lo
    if ok and s.hi is not None:
        ok = value <= s.hi
    if not ok:
        raise ConfigError(f"--{name} must be {_range_text(s)}, got {value}")


class Config:
    """Mixin of option dataclasses: parser, validation and hashing from the fields."""

    #: The ``--help`` group title of the class's options.
    GROUP: ClassVar[str] = ""

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        """Add one argparse option per field (flag name = field name)."""
        for name, default, s in specs(cls):
            flag = f"--{name}"
            help_ = s.help
            if s.kind == "flag":
                group.add_argument(flag, type=str2bool, nargs="?", const=True, default=default,
                                   help=help_, metavar="true|false")
            elif s.kind == "bool":
                group.add_argument(flag, type=str2bool, default=default, help=help_,
                                   metavar="true|false")
            elif s.kind == "list":
                group.add_argument(flag, action="append", default=default, help=help_,
                                   metavar=s.metavar)
            else:
                typ = s.type or (type(default) if default is not None else str)
                kw: dict[str, Any] = {"type": typ, "default": default, "help": help_}
                if s.choices is not None:
                    kw["choices"] = list(s.choices)
                if s.metavar:
                    kw["metavar"] = s.metavar
                group.add_argument(flag, **kw)

    @classmethod
    def from_options(cls, opts: "Mapping[str, Any] | Any") -> "Config":
        """The config from parsed options (a mapping or an object with attributes)."""
        get = opts.get if isinstance(opts, Mapping) else (lambda k, d=None: getattr(opts, k, d))
        kw = {f.name: get(f.name, f.default) for f in dataclasses.fields(cls)
              if f.init and _SPEC in f.metadata}
        return cls(**kw)  # type: ignore[call-arg]

    def validate(self) -> None:
        """Every field's range, then ``check()``'s rules between fields."""
        for name, _default, s in specs(type(self)):
            check_value(name, getattr(self, name), s)
        self.check()

    def check(self) -> None:
        """Rules that involve several fields (override); raise ``ConfigError``."""

    def to_json(self) -> dict[str, Any]:
        """The hashed fields: what shapes the output (config hash, manifest)."""
        return {name: getattr(self, name) for name, _d, s in specs(type(self)) if s.hashed}

    def manifest_json(self) -> dict[str, Any]:
        """What ``manifest.json`` records of this class: hashed fields and those marked."""
        return {name: getattr(self, name) for name, _d, s in specs(type(self))
                if (s.hashed if s.manifest is None else s.manifest)}

    @classmethod
    def path_options(cls) -> list[str]:
        """Names of the fields that hold file paths (``Spec.path``)."""
        return [name for name, _d, s in specs(cls) if s.path]

    def options(self) -> dict[str, Any]:
        """Every option field, hashed or not."""
        return {name: getattr(self, name) for name, _d, _s in specs(type(self))}


def add_groups(parser: argparse.ArgumentParser, classes: Sequence[type]) -> None:
    """One argument group per distinct ``GROUP`` title, in order of first appearance."""
    groups: dict[str, Any] = {}
    for cls in classes:
        title = cls.GROUP or "options"
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        cls.add_arguments(groups[title])
