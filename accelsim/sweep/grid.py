"""Grids: axes of dotted config overrides (``--vary``, grid files) and their expansion."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from accelsim.config import FrozenMap, resolve_key_type
from accelsim.errors import InputError
from accelsim.inputs import load_yaml_mapping, parse_yaml
from accelsim.schema import abbreviate, did_you_mean, short_key
from accelsim.sweep.constants import GRID_KEYS, GRID_KIND, Axis


def check_key(key: str, field: str = "--vary") -> None:
    """Raise InputError unless ``key`` is a dotted leaf of the config schema (did-you-mean)."""
    try:
        tp = resolve_key_type(key)
    except KeyError as error:
        raise InputError(str(error.args[0]), field=field) from None
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is FrozenMap:
        raise InputError(f"{key}: is a section, not a value; vary one of its keys "
                         "(`accelsim config keys` lists them)", field=field)


def parse_vary(text: str) -> Axis:
    """``"pe_array.rows=8,16,32"`` -> ``("pe_array.rows", [8, 16, 32])``.

    The values are one YAML flow list without its brackets (safe loader): ``true,false``,
    ``ws,os``, ``12.8,25.6``; a list value is written in brackets: ``[bitmap],[bitmap,rle]``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise InputError(f"expected KEY=V1,V2,..., got {text!r}", field="--vary")
    check_key(key, "--vary")
    try:
        values = parse_yaml(f"[{raw}]", "--vary")
    except InputError as error:
        raise InputError(f"cannot parse the values {abbreviate(raw)} ({error.message}; a "
                         "comma-separated YAML list, e.g. 8,16,32 or [bitmap],[bitmap,rle])",
                         field=f"--vary {key}") from None
    return key, values


def load_grid_file(path: str | Path) -> tuple[list[Axis], dict[str, list[Any]]]:
    """Read a grid YAML file: ``vary: {key: [values]}`` and/or ``zip: {key: [values], ...}``.

    Optional ``kind: sweep-grid`` and ``version: 1``; any other top-level key is an error naming
    the file and the key. Returns ``(vary axes in file order, zipped lists)`` for
    :func:`expand_grid`.
    """
    where = str(path)
    data = load_yaml_mapping(path)
    for name in data:
        if name not in GRID_KEYS:
            raise InputError(f"unknown top-level key{did_you_mean(name, GRID_KEYS)}; expected "
                             "vary and/or zip", path=where, field=short_key(name))
    if "kind" in data and data["kind"] != GRID_KIND:
        raise InputError(f"expected {GRID_KIND!r}, got {abbreviate(data['kind'])}", path=where,
                         field="kind")
    if "version" in data and data["version"] != 1:
        raise InputError(f"unsupported grid file version {abbreviate(data['version'])} (this "
                         "accelsim reads version 1)", path=where, field="version")
    if "vary" not in data and "zip" not in data:
        raise InputError("expected vary: and/or zip: with lists of values", path=where)
    sections: dict[str, dict[str, list[Any]]] = {}
    for section in ("vary", "zip"):
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise InputError(f"expected a mapping of dotted keys to lists, got {abbreviate(raw)}",
                             path=where, field=section)
        for key, values in raw.items():
            field = f"{section}.{key}"
            if not isinstance(values, list) or not values:
                raise InputError(f"expected a non-empty list of values, got {abbreviate(values)}",
                                 path=where, field=field)
            try:
                check_key(str(key), section)
            except InputError as error:
                raise InputError(str(error), path=where) from None
        sections[section] = {str(k): v for k, v in raw.items()}
    return list(sections["vary"].items()), sections["zip"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def expand_grid(vary: Sequence[Axis], zipped: Mapping[str, list[Any]] | None = None
                ) -> list[dict[str, Any]]:
    """Grid points: the cartesian product of the ``vary`` axes (first axis slowest), times the
    zipped lists taken together as one more (innermost) axis.

    Every key must be a config leaf (did-you-mean otherwise) and appear once; every axis a
    non-empty list without repeated values; all zipped lists of equal length. No axis at all gives
    one point with no overrides. Values are checked against the config by :func:`plan_sweep`.
    """
    zipped = dict(zipped or {})
    seen: set[str] = set()
    for key, values in [*vary, *zipped.items()]:
        field = "zip" if key in zipped else "--vary"
        check_key(key, field)
        if key in seen:
            raise InputError(f"{key}: varied twice (give each key one axis)", field=field)
        seen.add(key)
        if not isinstance(values, list) or not values:
            raise InputError(f"{key}: expected a non-empty list of values, got "
                             f"{abbreviate(values)}", field=field)
        texts = [canonical_json(v) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise InputError(f"{key}: value {repeated[0]} given twice", field=field)
    lengths = {key: len(values) for key, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key} has {n}" for key, n in lengths.items())
        raise InputError(f"zipped lists must have equal lengths: {listed}", field="zip")
    axes: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in vary]
    if zipped:
        count = next(iter(lengths.values()))
        axes.append([{key: values[i] for key, values in zipped.items()} for i in range(count)])
    points = []
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(copy.deepcopy(part))
        points.append(point)
    return points


def grid_from_options(vary_texts: Sequence[str], grid_files: Sequence[str | Path]
                      ) -> list[dict[str, Any]]:
    """The grid of a command line: ``--vary`` axes (in order), then each grid file's ``vary``
    axes; the ``zip`` lists of all grid files form one zipped axis."""
    vary = [parse_vary(text) for text in vary_texts]
    zipped: dict[str, list[Any]] = {}
    for path in grid_files:
        file_vary, file_zip = load_grid_file(path)
        vary.extend(file_vary)
        for key, values in file_zip.items():
            if key in zipped:
                raise InputError(f"{key}: zipped in two grid files", path=str(path), field="zip")
            zipped[key] = values
    return expand_grid(vary, zipped)
