"""The plan of a sweep: its traces, validated points and their ids (touches no output)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelsim import __version__
from accelsim.config import (
    HardwareConfig,
    apply_overrides,
    build_hardware,
    load_hardware,
)
from accelsim.errors import InputError
from accelsim.network import PHASES, parse_phases
from accelsim.sweep.constants import POINT_ID_HEX, SWEEP_FORMAT_VERSION, SWEEP_KIND
from accelsim.sweep.grid import canonical_json, check_key
from accelsim.trace import resolve_trace_dir


@dataclass(frozen=True)
class TraceRef:
    """A trace of the sweep: ``label`` is the path as given (the table's ``trace`` column),
    ``path`` its absolute form (what workers open), ``digest`` identifies its content."""

    label: str
    path: str
    digest: str


def trace_digest(path: str | Path) -> str:
    """Short SHA-256 of a trace's manifest and the JSON of every complete step (which holds a
    checksum of every mask), so no mask is decoded; InputError if it is not a replayable trace."""
    from accelsim.trace import TraceReader
    from accelsim.trace.format import MANIFEST_NAME, step_json_path

    root = Path(path)
    reader = TraceReader(root)
    if not reader.steps:
        raise InputError("the trace has no complete step to replay", path=str(root))
    digest = hashlib.sha256((root / MANIFEST_NAME).read_bytes())
    for step in reader.steps:
        digest.update(step_json_path(root, step).read_bytes())
    return digest.hexdigest()[:16]


def point_id(trace: str, overrides: Mapping[str, Any], base_digest: str,
             phases: Sequence[str]) -> str:
    """Short hash of (trace digest, canonical JSON of the overrides, base config digest,
    phases): the name of the point's file in ``OUT/points/``."""
    text = canonical_json({"trace": trace, "overrides": dict(overrides), "base": base_digest,
                            "phases": list(phases)})
    return hashlib.sha256(text.encode()).hexdigest()[:POINT_ID_HEX]


def _value_at(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def point_config(base: HardwareConfig, overrides: Mapping[str, Any],
                 source: str = "grid point") -> HardwareConfig:
    """``base`` with the dotted ``overrides`` applied and validated (as ``with_overrides``, with
    errors labelled by ``source`` instead of ``--set``)."""
    for key in overrides:
        check_key(key, source)
    raw = apply_overrides(base.to_dict(), list(overrides.items()))
    return build_hardware(raw, source=source)


@dataclass(frozen=True)
class PointTask:
    """One unit of work: replay trace ``trace_index`` on grid point ``point``. Picklable."""

    trace_index: int
    point: int
    point_id: str
    trace: TraceRef
    overrides: dict[str, Any]
    varied: dict[str, Any]  # every varied key's value in this point's config
    hw: HardwareConfig
    base_digest: str
    phases: tuple[str, ...]


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: base config, phases, canonical grid, the config of every point and
    the traces. Building it touches no output."""

    base: HardwareConfig
    base_path: str
    set_overrides: tuple[str, ...]
    phases: tuple[str, ...]
    varied_keys: tuple[str, ...]
    grid: tuple[dict[str, Any], ...]
    configs: tuple[HardwareConfig, ...]
    traces: tuple[TraceRef, ...]

    @property
    def base_digest(self) -> str:
        return self.base.digest()

    def point_id(self, trace_index: int, point: int) -> str:
        return point_id(self.traces[trace_index].digest, self.grid[point], self.base_digest,
                        self.phases)

    def tasks(self) -> list[PointTask]:
        """Every (trace, point), in trace order then grid order."""
        base_digest = self.base_digest
        return [PointTask(t, p, self.point_id(t, p), trace, self.grid[p],
                          self.varied_values(p), self.configs[p], base_digest, self.phases)
                for t, trace in enumerate(self.traces) for p in range(len(self.grid))]

    def varied_values(self, point: int) -> dict[str, Any]:
        """The varied keys' values of a point as the config holds them (canonical types)."""
        data = self.configs[point].to_dict()
        return {key: _value_at(data, key) for key in self.varied_keys}

    def identity(self) -> dict[str, Any]:
        """The content of ``sweep.json``."""
        return {
            "kind": SWEEP_KIND,
            "version": SWEEP_FORMAT_VERSION,
            "accelsim_version": __version__,
            "base_config": {"path": self.base_path, "set": list(self.set_overrides),
                            "digest": self.base_digest, "name": self.base.name},
            "phases": list(self.phases),
            "varied_keys": list(self.varied_keys),
            "grid": [dict(point) for point in self.grid],
            "traces": [{"path": t.label, "digest": t.digest} for t in self.traces],
        }


def _refuse_unreplayable(refs: Sequence[TraceRef], configs: Sequence[HardwareConfig],
                         phases: Sequence[str]) -> None:
    """An InputError before any point runs when a trace records masks a point's hardware
    cannot replay (DGC's input selection: :func:`accelsim.engine.dgc.refuse_dgc`)."""
    from accelsim.engine.dgc import refuse_dgc
    from accelsim.trace import TraceReader

    for ref in refs:
        layers = TraceReader(ref.path).layers
        for hw in configs:
            refuse_dgc(layers, hw, phases, ref.label)


def plan_sweep(traces: Sequence[str | Path], base_config_path: str | Path,
               set_overrides: Sequence[str], points: Sequence[Mapping[str, Any]], *,
               phases: str | Sequence[str] = PHASES) -> SweepPlan:
    """Validate everything before anything runs: the base config, every grid point (a bad value
    fails naming the point, key and value), the traces (each replayable, none given twice)."""
    phase_list = parse_phases(phases)
    if not traces:
        raise InputError("give at least one trace", field="TRACE")
    if not points:
        raise InputError("the grid has no point", field="--vary")
    base = load_hardware(base_config_path, list(set_overrides))
    varied: list[str] = []
    grid, configs, seen = [], [], {}
    for index, overrides in enumerate(points):
        if not isinstance(overrides, Mapping):
            raise InputError(f"grid point {index}: expected a mapping of dotted keys, got "
                             f"{overrides!r}", field="--vary")
        hw = point_config(base, overrides, source=f"grid point {index}")
        data = hw.to_dict()
        canonical = {key: _value_at(data, key) for key in overrides}
        text = canonical_json(canonical)
        if text in seen:
            raise InputError(f"grid points {seen[text]} and {index} are the same hardware "
                             f"({text})", field="--vary")
        seen[text] = index
        varied.extend(key for key in overrides if key not in varied)
        grid.append(canonical)
        configs.append(hw)
    refs = []
    by_digest: dict[str, str] = {}
    for path in traces:
        digest = trace_digest(resolve_trace_dir(path))
        if digest in by_digest:
            raise InputError(f"the same trace as {by_digest[digest]} (given twice?)",
                             path=str(path))
        by_digest[digest] = str(path)
        refs.append(TraceRef(str(path), str(resolve_trace_dir(path).resolve()), digest))
    _refuse_unreplayable(refs, configs, phase_list)
    return SweepPlan(base, str(base_config_path), tuple(set_overrides), phase_list,
                     tuple(varied), tuple(grid), tuple(configs), tuple(refs))
