"""One validator for every typed input: frozen dataclasses built from parsed YAML/JSON data.

A schema is a frozen dataclass whose fields are declared with :func:`param` (unit, range or
choices, one-line description). :func:`build` turns a raw mapping into an instance, or collects
every problem (unknown key with a did-you-mean, wrong type, out-of-range value, missing required
key) under its dotted key into one :class:`Problems` list whose error is one bounded line:
``file: key: problem; key: problem (N errors)``. The hardware config and the training recipe are
such schemas; the sweep grid and the trace manifest use the same message helpers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field
from typing import Any, Generic, TypeVar

from accelsim.errors import InputError

MAX_PROBLEMS_SHOWN = 8  # problems spelled out in one error line; the rest are counted
MAX_PROBLEM_CHARS = 240  # one problem's text, values abbreviated first
MAX_KEY_CHARS = 60

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping, Generic[K, V]):
    """A read-only mapping that hashes by its items: a frozen config's table (the energy
    entries), so that a whole config can key a cache."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._items == dict(other.items())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self) -> tuple:
        return type(self), (self._items,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


def plain(value: Any) -> Any:
    """A value as plain YAML/JSON data: dataclasses and mappings as dicts with string keys,
    tuples as lists, numpy scalars as Python numbers (what :meth:`HardwareConfig.to_dict`
    returns, and what a sweep stores)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()  # a numpy scalar
    return value


def param(*, unit: str = "", doc: str, ge: float | None = None, le: float | None = None,
          gt: float | None = None, lt: float | None = None, choices: tuple[str, ...] | None = None,
          default: Any = dataclasses.MISSING, factory: Any = None) -> Any:
    """A dataclass field with validation metadata (unit, range, choices, description)."""
    metadata = {"unit": unit, "doc": doc, "ge": ge, "le": le, "gt": gt, "lt": lt,
                "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 4, 4, 3
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 40


def abbreviate(value: Any) -> str:
    """``repr(value)`` cut short: a few items of each container, two levels, 40 characters of a
    string. Bounded work and length whatever the value (a YAML alias bomb's expansion too)."""
    return _REPR.repr(value)


def one_line(text: str) -> str:
    """``text`` with every control character (newline, carriage return, ...) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def short_key(name: Any) -> str:
    """A key as text (quoted where it holds control characters), cut to
    :data:`MAX_KEY_CHARS`."""
    text = name if isinstance(name, str) and name.isprintable() else abbreviate(name)
    return text if len(text) <= MAX_KEY_CHARS else text[:MAX_KEY_CHARS - 3] + "..."


def did_you_mean(name: Any, options: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_message(name: Any, options: Iterable[str]) -> str:
    """``unknown key (did you mean 'x'?)``, else the sorted list of expected keys."""
    options = list(options)
    hint = did_you_mean(name, options)
    return f"unknown key{hint}" if hint else f"unknown key; expected one of {sorted(options)}"


class Problems:
    """Problems found in one input, each ``(dotted key, message)``; one bounded error line.

    ``overridden``: keys set with ``--set`` (their problems say so); ``labels``: how to name
    other keys that came from the command line (``{"seed": "--seed"}``).
    """

    def __init__(self, source: str, overridden: set[str] | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.labels = {key: f"--set {key}" for key in overridden or ()} | dict(labels or {})
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        self.items.append((key, message))

    def error(self) -> InputError:
        """One InputError naming the source: the first problems spelled out, the rest counted."""
        parts = []
        for key, message in self.items[:MAX_PROBLEMS_SHOWN]:
            text = f"{self.labels.get(key, key)}: {message}"
            if len(text) > MAX_PROBLEM_CHARS:
                text = text[:MAX_PROBLEM_CHARS - 3] + "..."
            parts.append(text)
        hidden = len(self.items) - len(parts)
        more = f"; and {hidden} more" if hidden else ""
        count = "" if len(self.items) == 1 else f" ({len(self.items)} errors)"
        return InputError("; ".join(parts) + more + count, path=self.source)

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


# ---------------------------------------------------------------------------------------------
# Building a schema from raw data
# ---------------------------------------------------------------------------------------------

_FAILED = object()  # what a conversion returns after recording its problem
_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # 1e-3: text to YAML 1.1


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp))


def _number_hint(value: Any, tp: Any) -> str:
    """Why a number came as a string: YAML 1.1 reads ``1e-3`` (no dot) as text."""
    if tp is float and isinstance(value, str) and _EXPONENT.match(value.strip()):
        return " (YAML reads this as text: write it with a dot and a signed exponent, 1.0e-3)"
    return ""


def _check_range(value: float, meta: Mapping[str, Any]) -> str | None:
    ge, le, gt, lt = meta.get("ge"), meta.get("le"), meta.get("gt"), meta.get("lt")
    lower = f"> {gt}" if gt is not None else (f">= {ge}" if ge is not None else None)
    upper = f"< {lt}" if lt is not None else (f"<= {le}" if le is not None else None)
    if (gt is not None and not value > gt) or (ge is not None and value < ge) or (
            le is not None and value > le) or (lt is not None and not value < lt):
        bounds = " and ".join(b for b in (lower, upper) if b)
        return f"{value} is out of range (must be {bounds})"
    return None


def _convert_scalar(value: Any, tp: Any, meta: Mapping[str, Any], key: str,
                    problems: Problems) -> Any:
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        problems.add(key, f"expected {_type_name(tp)}, got {abbreviate(value)}"
                     f"{_number_hint(value, tp)}")
        return _FAILED
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            problems.add(key, f"expected a finite number, got {value!r}")
            return _FAILED
    choices = meta.get("choices")
    if tp is str and choices and value not in choices:
        problems.add(key, f"{abbreviate(value)} is not one of {', '.join(choices)}"
                     f"{did_you_mean(value, choices)}")
        return _FAILED
    if tp in (int, float):
        problem = _check_range(value, meta)
        if problem:
            problems.add(key, problem)
            return _FAILED
    return value


def optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _convert(value: Any, tp: Any, meta: Mapping[str, Any], key: str, problems: Problems) -> Any:
    origin = typing.get_origin(tp)
    inner = optional_inner(tp)
    if inner is not None:
        return None if value is None else _convert(value, inner, meta, key, problems)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, problems)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            problems.add(key, f"expected a list, got {abbreviate(value)}")
            return _FAILED
        items = [_convert(v, item_tp, meta, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return _FAILED if any(item is _FAILED for item in items) else tuple(items)
    if origin is FrozenMap:
        _, value_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            problems.add(key, f"expected a mapping, got {abbreviate(value)}")
            return _FAILED
        built = {str(k): _convert(v, value_tp, {}, f"{key}.{short_key(k)}", problems)
                 for k, v in value.items()}
        return _FAILED if any(v is _FAILED for v in built.values()) else FrozenMap(built)
    return _convert_scalar(value, tp, meta, key, problems)


def _build(cls: type, raw: Any, prefix: str, problems: Problems) -> Any:
    where = prefix or "top level"
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected a mapping, got {abbreviate(raw)}")
        return _FAILED
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [name for name in raw if name not in fields]
    unhinted = []
    for name in unknown:
        hint = did_you_mean(name, fields)
        if hint:
            problems.add(f"{prefix}.{short_key(name)}" if prefix else short_key(name),
                         f"unknown key{hint}")
        else:
            unhinted.append(short_key(name))
    expected = f"expected one of {sorted(fields)}"
    if len(unhinted) == 1:
        problems.add(f"{prefix}.{unhinted[0]}" if prefix else unhinted[0],
                     f"unknown key; {expected}")
    elif unhinted:  # one problem for all of them: the expected keys are listed once
        names = ", ".join(unhinted[:MAX_PROBLEMS_SHOWN])
        if len(unhinted) > MAX_PROBLEMS_SHOWN:
            names += f" and {len(unhinted) - MAX_PROBLEMS_SHOWN} more"
        problems.add(where, f"unknown keys {names}; {expected}")
    values: dict[str, Any] = {}
    failed = bool(unknown)
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in raw:
            converted = _convert(raw[name], hints[name], f.metadata, key, problems)
            failed |= converted is _FAILED
            values[name] = converted
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.add(key, "missing required key")
            failed = True
    if failed:
        return _FAILED
    try:
        return cls(**values)
    except InputError as error:  # a schema's own cross-field rule (__post_init__)
        problems.add(f"{prefix}.{error.field}" if prefix and error.field
                     else error.field or where, error.message)
        return _FAILED


def build(cls: type[V], raw: Any, problems: Problems) -> V | None:
    """Build schema ``cls`` from ``raw`` (a mapping); None after recording its problems."""
    built = _build(cls, raw, "", problems)
    return None if built is _FAILED else built


def build_or_raise(cls: type[V], raw: Any, source: str,
                   labels: Mapping[str, str] | None = None) -> V:
    """Build schema ``cls`` from ``raw``; one InputError naming ``source`` listing every
    problem otherwise (``labels``: see :class:`Problems`)."""
    problems = Problems(source, labels=labels)
    built = build(cls, raw, problems)
    problems.raise_if_any()
    assert built is not None  # build returns None only after recording a problem
    return built
