"""Writing a trace: the manifest once, then one committed step at a time.

A step is written as ``steps/step-XXXXXXXX.bin`` (the compressed masks) and then
``steps/step-XXXXXXXX.json`` (statistics and one entry per mask), each through a temporary file,
fsync and rename; the ``.json`` is the commit marker. A killed recorder therefore leaves a valid
trace of the steps it completed, and :meth:`TraceWriter.resume` continues it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from accelsim import __version__
from accelsim.fileio import TMP_SUFFIX, atomic_write_bytes, fsync_dir
from accelsim.trace.format import (
    CODEC,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MASK_DTYPE,
    RAW_CODEC,
    READER_VERSION,
    STEPS_DIR,
    TraceError,
    crc32,
    dumps_json,
    is_step_file,
    list_step_files,
    mask_size,
    mask_where,
    pack_mask,
    parse_version,
    step_bin_path,
    step_json_path,
    to_json_value,
)
from accelsim.trace.manifest import Manifest, TraceLayer
from accelsim.trace.reader import TraceReader

MIN_SAVING = 0.25
"""Default share of a mask's packed bytes zlib must save for the mask to be stored compressed.
Random gate masks save 10-12 % (synthetic and recorded CDG and SCDG gates, element-wise and 2:4
weights: 0-11 %), yet inflating them makes a replay about 5x slower; pruned blocks save 94-98 %."""
APPENDABLE_VERSIONS = ((1, 3), (1, 4), READER_VERSION)
"""Format versions a resumed recording may append to: 1.4 changed only which post ops a
manifest may list (a 1.3 manifest lists none of the new ones), 1.5 added the select mask kind
(a 1.3 or 1.4 manifest declares none), not the step files of traces without it."""

MaskMapping = Mapping[tuple[str, int], np.ndarray]
"""``(layer name, branch) -> mask``; branches are numbered from 1."""


@dataclass
class _StoredWeight:
    """The last weight mask stored for one (layer, branch): where, and its packed bits."""

    step: int
    ones: int
    crc32: int
    packed: bytes | None  # None after resume until a comparison needs it


class TraceWriter:
    """Appends steps to a trace directory. Build one with :meth:`create` or :meth:`resume`.

    One writer per trace at a time. Usable as a context manager (closing only stops further
    writes: every step is durable as soon as :meth:`write_step` returns).
    """

    def __init__(self, root: Path, manifest: Manifest, *, compression_level: int,
                 min_saving: float = MIN_SAVING, last_step: int | None = None,
                 stored: dict[tuple[str, int], _StoredWeight] | None = None,
                 reader: TraceReader | None = None) -> None:
        self._root = root
        self._manifest = manifest
        self._level = compression_level
        self._min_saving = min_saving
        self._last_step = last_step
        self._stored = dict(stored or {})
        self._reader = reader
        self._closed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], producer: Mapping[str, Any],
               layers: Sequence[TraceLayer], branches: int = 2, overwrite: bool = False,
               compression_level: int = 6, min_saving: float = MIN_SAVING) -> TraceWriter:
        """Start a new trace in directory ``path`` and write its manifest.

        ``producer`` is free-form JSON describing what made the trace (algorithm and parameters,
        SSL method, model, dataset, seed, steps); tuples become lists, numpy scalars numbers.
        ``path`` must be absent or empty; with ``overwrite`` an existing trace there is
        deleted (a directory holding anything else is refused). ``compression_level`` is zlib's
        0 (none) .. 9 (smallest); a mask is stored compressed only when zlib saves at least
        ``min_saving`` (0..1; 0: always) of its packed bytes, else as they are (codec ``none``:
        the replay reads it without inflating).
        """
        root = Path(path)
        level = _check_level(compression_level, root)
        min_saving = _check_min_saving(min_saving, root)
        if not isinstance(producer, Mapping):
            raise TraceError(f"producer must be a mapping, got {type(producer).__name__}",
                             path=root)
        try:
            producer_json = to_json_value(dict(producer), "producer")
        except ValueError as error:
            raise TraceError(str(error), path=root) from None
        try:
            manifest = Manifest(version=FORMAT_VERSION, created_by=f"accelsim {__version__}",
                                producer=producer_json, branches=branches, layers=tuple(layers))
        except TraceError as error:
            raise TraceError(error.message, path=root, field=error.field) from None
        if root.exists():
            if not root.is_dir():
                raise TraceError("exists and is not a directory", path=root)
            if any(root.iterdir()):
                if not overwrite:
                    raise TraceError("directory is not empty (a new trace needs an empty "
                                     "directory; TraceWriter.create(overwrite=True) replaces "
                                     "a trace)", path=root)
                _clear_trace(root)
        (root / STEPS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(root / MANIFEST_NAME, dumps_json(manifest.to_json()))
        return cls(root, manifest, compression_level=level, min_saving=min_saving)

    @classmethod
    def resume(cls, path: str | os.PathLike[str], compression_level: int = 6,
               min_saving: float = MIN_SAVING) -> TraceWriter:
        """Reopen an existing trace to append steps after its last complete one.

        Validates the manifest, deletes incomplete steps (a ``.bin`` without ``.json``) and
        temporary files. Weight masks unchanged since before the interruption become references.
        """
        root = Path(path)
        level = _check_level(compression_level, root)
        min_saving = _check_min_saving(min_saving, root)
        reader = TraceReader(root)
        version = parse_version(reader.manifest.version)
        if version not in APPENDABLE_VERSIONS:
            raise TraceError(f"cannot append to a trace of format version "
                             f"{reader.manifest.version} (this accelsim writes {FORMAT_VERSION})",
                             path=root)
        complete = set(reader.steps)
        _, bins = list_step_files(root)
        for step in bins:
            if step not in complete:
                step_bin_path(root, step).unlink()
        (root / STEPS_DIR).mkdir(exist_ok=True)
        for folder in (root, root / STEPS_DIR):
            for entry in folder.iterdir():
                if entry.name.endswith(TMP_SUFFIX) and entry.is_file():
                    entry.unlink()
        fsync_dir(root / STEPS_DIR)
        last_step = reader.steps[-1] if reader.steps else None
        stored: dict[tuple[str, int], _StoredWeight] = {}
        if last_step is not None:
            for item in reader.layers:
                for branch in range(1, reader.branches + 1):
                    source = reader.weight_step(last_step, item.name, branch)
                    if source is None:
                        continue
                    entry = reader._index(source).entries[(item.name, branch, "weight")]
                    stored[(item.name, branch)] = _StoredWeight(source, entry.ones, entry.crc32,
                                                                None)
        return cls(root, reader.manifest, compression_level=level, min_saving=min_saving,
                   last_step=last_step,
                   stored=stored, reader=reader)

    # -- state ---------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The trace directory."""
        return self._root

    @property
    def manifest(self) -> Manifest:
        """The manifest written at creation."""
        return self._manifest

    @property
    def last_step(self) -> int | None:
        """The last complete step, or None before the first."""
        return self._last_step

    def close(self) -> None:
        """Refuse further writes (nothing to flush: each step is committed when written)."""
        self._closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def write_step(self, step: int, gates: MaskMapping,
                   weights: Mapping[tuple[str, int], np.ndarray | None],
                   stats: Mapping[str, Any] | None = None,
                   selects: MaskMapping | None = None) -> None:
        """Record one training step and commit it.

        ``gates[(layer, branch)]``: bool (or 0/1 uint8) array of the layer's gate shape
        ``(N, Cout/s, Ho, Wo)``, for every branch of every layer with a gate spec.
        ``weights[(layer, branch)]``: bool array ``(Cout, Cin/groups, kh, kw)`` for every branch
        of every layer with a weight spec, or None when unchanged since the last stored one; a
        mask equal to the last stored one is stored as a reference too.
        ``selects[(layer, branch)]``: bool ``(N, heads, Cin)`` for every branch of every layer
        with a select spec (DGC's input-channel selection; format 1.5).
        ``stats``: ``loss`` (float or None) and any extra JSON values (non-finite numbers become
        null); the writer adds the per layer/branch densities. ``step`` must exceed
        :attr:`last_step`. Everything is checked before anything is written.
        """
        if self._closed:
            raise TraceError("the writer is closed", path=self._root)
        if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
            raise TraceError(f"step must be a non-negative integer, got {step!r}",
                             path=self._root)
        step = int(step)
        if self._last_step is not None and step <= self._last_step:
            raise TraceError(f"step {step} must be greater than the last written step "
                             f"{self._last_step}", path=self._root)
        gate_masks = self._collect(step, gates, "gate")
        weight_masks = self._collect(step, weights, "weight")
        select_masks = self._collect(step, selects or {}, "select")
        loss, extra = self._check_stats(step, stats)

        chunks: list[bytes] = []
        entries: list[dict[str, Any]] = []
        density: dict[str, dict[str, dict[str, float]]] = {}
        updates: dict[tuple[str, int], _StoredWeight] = {}
        offset = 0
        for item in self._manifest.layers:
            name = item.name
            for kind, spec, masks in (("gate", item.gate, gate_masks),
                                      ("select", item.select, select_masks)):
                if spec is None:
                    continue
                size = mask_size(spec.shape)
                per_branch = density.setdefault(name, {}).setdefault(kind, {})
                for branch in self._branch_ids():
                    mask = masks[(name, branch)]
                    assert mask is not None
                    packed = pack_mask(mask)
                    ones = int(np.count_nonzero(mask))
                    entry, payload = self._data_entry(name, branch, kind, spec.shape,
                                                      packed, crc32(packed), ones, offset)
                    entries.append(entry)
                    chunks.append(payload)
                    offset += len(payload)
                    per_branch[str(branch)] = ones / size
            if item.weight is not None:
                size = mask_size(item.weight.shape)
                per_branch = density.setdefault(name, {}).setdefault("weight", {})
                for branch in self._branch_ids():
                    key = (name, branch)
                    mask = weight_masks[key]
                    last = self._stored.get(key)
                    if mask is None:
                        if last is None:
                            raise TraceError("None (unchanged) but no earlier step stores this "
                                             "weight mask", path=self._root,
                                             field=mask_where(step, name, branch, "weight"))
                        ones = last.ones
                        entries.append(_ref_entry(name, branch, last.step))
                    else:
                        packed = pack_mask(mask)
                        checksum = crc32(packed)
                        ones = int(np.count_nonzero(mask))
                        if last is not None and self._same_weight(key, last, packed, checksum):
                            entries.append(_ref_entry(name, branch, last.step))
                        else:
                            entry, payload = self._data_entry(name, branch, "weight",
                                                              item.weight.shape, packed,
                                                              checksum, ones, offset)
                            entries.append(entry)
                            chunks.append(payload)
                            offset += len(payload)
                            updates[key] = _StoredWeight(step, ones, checksum, packed)
                    per_branch[str(branch)] = ones / size

        step_stats = {"loss": loss, "density": density, **extra}
        atomic_write_bytes(step_bin_path(self._root, step), b"".join(chunks))
        step_file = {"step": step, "stats": step_stats, "masks": entries}
        atomic_write_bytes(step_json_path(self._root, step), dumps_json(step_file))
        self._last_step = step
        self._stored.update(updates)

    # -- internals -----------------------------------------------------------------------------

    def _branch_ids(self) -> range:
        return range(1, self._manifest.branches + 1)

    def _collect(self, step: int, given: Mapping[tuple[str, int], np.ndarray | None],
                 kind: str) -> dict[tuple[str, int], np.ndarray | None]:
        """Check a gate, weight or select mapping against the manifest; bool arrays (or None)
        per key."""
        if not isinstance(given, Mapping):
            raise TraceError(f"{kind}s must map (layer, branch) to a mask, got "
                             f"{type(given).__name__}", path=self._root, field=f"step {step}")
        out: dict[tuple[str, int], np.ndarray | None] = {}
        for key, value in given.items():
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)
                    and isinstance(key[1], int | np.integer) and not isinstance(key[1], bool)):
                raise TraceError(f"{kind} keys must be (layer name, branch), got {key!r}",
                                 path=self._root, field=f"step {step}")
            name, branch = key[0], int(key[1])
            key = (name, branch)
            where = mask_where(step, name, branch, kind)
            try:
                item = self._manifest.layer(name)
            except KeyError:
                raise TraceError(f"unknown layer {name!r} (not in the manifest)",
                                 path=self._root, field=where) from None
            if branch not in self._branch_ids():
                raise TraceError(f"branch must be 1..{self._manifest.branches}",
                                 path=self._root, field=where)
            spec = getattr(item, kind)
            if spec is None:
                raise TraceError(f"the manifest declares no {kind} mask for this layer",
                                 path=self._root, field=where)
            if value is None:
                if kind != "weight":
                    raise TraceError(f"a {kind} mask cannot be None", path=self._root, field=where)
                out[key] = None
            else:
                out[key] = self._check_mask(value, spec.shape, where)
        for item in self._manifest.layers:
            if getattr(item, kind) is None:
                continue
            for branch in self._branch_ids():
                if (item.name, branch) not in out:
                    hint = " (pass None if unchanged)" if kind == "weight" else ""
                    raise TraceError(f"missing: every branch of this layer needs a {kind} "
                                     f"mask{hint}", path=self._root,
                                     field=mask_where(step, item.name, branch, kind))
        return out

    def _check_mask(self, value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype == np.uint8:
            if array.size and int(array.max()) > 1:
                raise TraceError("a uint8 mask must hold only 0 and 1", path=self._root,
                                 field=where)
            array = array.astype(np.bool_)
        elif array.dtype != np.bool_:
            raise TraceError(f"dtype must be bool (or uint8 0/1), got {array.dtype}",
                             path=self._root, field=where)
        if array.shape != shape:
            raise TraceError(f"shape {list(array.shape)} does not match the manifest "
                             f"{list(shape)}", path=self._root, field=where)
        return array

    def _check_stats(self, step: int,
                     stats: Mapping[str, Any] | None) -> tuple[float | None, dict[str, Any]]:
        if stats is None:
            return None, {}
        where = f"step {step}"
        if not isinstance(stats, Mapping):
            raise TraceError(f"stats must be a mapping, got {type(stats).__name__}",
                             path=self._root, field=where)
        if "density" in stats:
            raise TraceError("stats key 'density' is reserved (the writer computes densities)",
                             path=self._root, field=where)
        try:
            values = to_json_value(dict(stats), "stats", nonfinite_to_null=True)
        except ValueError as error:
            raise TraceError(str(error), path=self._root, field=where) from None
        loss = values.pop("loss", None)
        if loss is not None and (not isinstance(loss, int | float) or isinstance(loss, bool)):
            raise TraceError(f"stats.loss must be a number or None, got {loss!r}",
                             path=self._root, field=where)
        return (None if loss is None else float(loss)), values

    def _data_entry(self, name: str, branch: int, kind: str, shape: tuple[int, ...],
                    packed: bytes, checksum: int, ones: int,
                    offset: int) -> tuple[dict[str, Any], bytes]:
        payload, codec = packed, RAW_CODEC
        if self._level:
            deflated = zlib.compress(packed, self._level)
            if self._min_saving == 0 or len(deflated) <= len(packed) * (1 - self._min_saving):
                payload, codec = deflated, CODEC
        entry = {"layer": name, "branch": branch, "kind": kind, "shape": list(shape),
                 "dtype": MASK_DTYPE, "codec": codec,
                 "offset": offset, "length": len(payload),
                 "packed_bytes": len(packed), "crc32": checksum, "ones": ones}
        return entry, payload

    def _same_weight(self, key: tuple[str, int], last: _StoredWeight, packed: bytes,
                     checksum: int) -> bool:
        """Whether ``packed`` equals the last stored weight mask of ``key`` byte for byte."""
        if last.crc32 != checksum:
            return False
        if last.packed is None:  # after resume: read it back once
            assert self._reader is not None
            stored = self._reader.weight(last.step, *key)
            assert stored is not None
            last.packed = pack_mask(stored)
        return last.packed == packed


def _ref_entry(name: str, branch: int, ref_step: int) -> dict[str, Any]:
    return {"layer": name, "branch": branch, "kind": "weight", "ref_step": ref_step}


def _check_level(level: int, root: Path) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 9:
        raise TraceError(f"compression_level must be an integer 0..9, got {level!r}", path=root)
    return level


def _check_min_saving(min_saving: float, root: Path) -> float:
    if (not isinstance(min_saving, int | float) or isinstance(min_saving, bool)
            or not 0 <= min_saving <= 1):
        raise TraceError(f"min_saving must be a number in [0, 1], got {min_saving!r}",
                         path=root)
    return float(min_saving)


def _clear_trace(root: Path) -> None:
    """Delete the trace in ``root``; refuse (deleting nothing) if it holds anything else."""
    victims: list[Path] = []
    for entry in root.iterdir():
        if entry.name == MANIFEST_NAME or (entry.name.startswith(MANIFEST_NAME)
                                           and entry.name.endswith(TMP_SUFFIX)):
            if not entry.is_file():
                raise TraceError(f"refusing to overwrite: {entry.name!r} is not a file",
                                 path=root)
            victims.append(entry)
        elif entry.name == STEPS_DIR and entry.is_dir():
            for sub in entry.iterdir():
                if not (sub.is_file() and is_step_file(sub.name)):
                    raise TraceError(f"refusing to overwrite: {STEPS_DIR}/{sub.name} is not "
                                     f"part of a trace", path=root)
                victims.append(sub)
        else:
            raise TraceError(f"refusing to overwrite: {entry.name!r} is not part of a trace",
                             path=root)
    victims.sort(key=lambda p: p.name != MANIFEST_NAME)  # the manifest goes first
    for victim in victims:
        victim.unlink()

