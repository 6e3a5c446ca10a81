"""Reading a trace: manifest, step list, statistics (JSON only) and masks (decoded on demand).

A step's ``.bin`` is read once when a whole step is decoded (:meth:`TraceReader.iter_steps`,
:meth:`TraceReader.verify`); a single mask (:meth:`TraceReader.gate`) reads only its own bytes.
Decoded weight masks are kept in a small cache keyed by the step that stores them, so weight
references to an earlier step cost nothing.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from accelsim.schema import abbreviate
from accelsim.store import Store
from accelsim.trace.format import (
    CODECS,
    MANIFEST_NAME,
    MASK_DTYPE,
    MASK_KINDS,
    RAW_CODEC,
    STEPS_DIR,
    TraceError,
    cannot_read,
    list_step_files,
    load_json,
    mask_size,
    mask_where,
    packed_ones,
    packed_size,
    popcount_words,
    step_bin_path,
    step_json_path,
    step_stem,
    unpack_mask,
    zlib_fast,
)
from accelsim.trace.format import crc32 as _crc32
from accelsim.trace.manifest import Manifest, TraceLayer, is_strict, load_manifest

_STEP_KEYS = ("step", "stats", "masks")
_DATA_KEYS = ("layer", "branch", "kind", "shape", "dtype", "codec", "offset", "length",
              "packed_bytes", "crc32", "ones")
_REF_KEYS = ("layer", "branch", "kind", "ref_step")
_INDEX_CACHE_STEPS = 64

MaskKey = tuple[str, int]
"""``(layer name, branch)``; branches are numbered from 1."""


@dataclass(frozen=True)
class StepMasks:
    """Every mask of one recorded step.

    ``gates[(layer, branch)]`` is a bool array of the layer's gate shape ``(N, Cout/s, Ho, Wo)``,
    ``weights[(layer, branch)]`` a bool array ``(Cout, Cin/groups, kh, kw)``; only layers whose
    manifest entry declares the mask appear. Arrays are read-only; an unchanged weight mask is
    the same array object as at the step that stores it (while it stays cached).
    ``stats`` is the step's statistics as in :meth:`TraceReader.stats`.
    """

    step: int
    gates: dict[MaskKey, np.ndarray]
    weights: dict[MaskKey, np.ndarray]
    stats: dict[str, Any]
    selects: dict[MaskKey, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One mask entry of a step file: payload location and checks, or a reference."""

    layer: str
    branch: int
    kind: str
    shape: tuple[int, ...]
    ref_step: int | None = None
    offset: int = 0
    length: int = 0
    packed_bytes: int = 0
    crc32: int = 0
    ones: int = 0
    codec: str = ""


@dataclass(frozen=True)
class PackedMask:
    """One mask as stored: little-endian packed bits of a C-order bool array of ``shape``
    (``data`` uint8, read-only, checked against the step file's crc32 and ones count)."""

    data: np.ndarray
    shape: tuple[int, ...]
    ones: int

    @property
    def size(self) -> int:
        """Mask elements (bits)."""
        return mask_size(self.shape)

    def unpack(self) -> np.ndarray:
        """The mask as a new bool array."""
        return unpack_mask(self.data.tobytes(), self.shape)


class LazyGates(Mapping):
    """The packed gates of one step, each read and checked (crc32, ones) when first looked up,
    so a replay checks a layer's bits right before it counts them (while they are in cache).
    A corrupt mask raises its TraceError at that lookup."""

    def __init__(self, entries: dict[MaskKey, Any],
                 decode: Callable[[Any], PackedMask]) -> None:
        self._entries = entries
        self._decode = decode
        self._done: dict[MaskKey, PackedMask] = {}

    def __getitem__(self, key: MaskKey) -> PackedMask:
        if key not in self._done:
            self._done[key] = self._decode(self._entries[key])
        return self._done[key]

    def __iter__(self) -> Iterator[MaskKey]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class PackedStepMasks:
    """Every mask of one step, gates packed (:class:`PackedMask`, checked when first looked
    up: :class:`LazyGates`), weights decoded as in :class:`StepMasks` (they are small and
    cached)."""

    step: int
    gates: Mapping[MaskKey, PackedMask]
    weights: dict[MaskKey, np.ndarray]
    stats: dict[str, Any]
    selects: dict[MaskKey, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class _StepIndex:
    step: int
    stats: dict[str, Any]
    entries: dict[tuple[str, int, str], _Entry]


def _nonneg_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class TraceReader:
    """Read-only view of a trace directory.

    The manifest is validated and the complete steps are listed once, at construction; steps
    written later by a running recorder need a new reader. Incomplete steps (a ``.bin`` without
    its ``.json``) and temporary files are ignored. Every problem raises :class:`TraceError`.

    ``count_words(words)``: the set bits of uint64 words, for each mask's ones check
    (:func:`accelsim.trace.format.packed_ones`); numpy's by default, so reading a trace needs
    no compiled kernel. The replay passes :func:`accelsim.kernels.popcount_words`, the same
    count by LLVM's ctpop.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 count_words: Callable[[np.ndarray], int] = popcount_words) -> None:
        self._root = Path(path)
        self._count_words = count_words
        self._manifest = load_manifest(self._root)
        self._strict = is_strict(self._manifest.version)
        self._specs = {item.name: item for item in self._manifest.layers}
        self._steps, _ = list_step_files(self._root)
        self._step_set = set(self._steps)
        self._indexes = Store(_INDEX_CACHE_STEPS)  # step -> _StepIndex
        per_step = sum(item.weight is not None for item in self._manifest.layers)
        # decoded weight masks by (stored step, layer, branch): two steps' worth
        self._weights = Store(max(2, 2 * per_step * self._manifest.branches))

    def __repr__(self) -> str:
        return f"TraceReader({str(self._root)!r}, steps={len(self._steps)})"

    # -- manifest ------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The trace directory."""
        return self._root

    @property
    def manifest(self) -> Manifest:
        """The validated manifest."""
        return self._manifest

    @property
    def layers(self) -> tuple[TraceLayer, ...]:
        """Layers in manifest order, each with its geometry and mask specs."""
        return self._manifest.layers

    @property
    def branches(self) -> int:
        """Number of branches; branch ids are 1..branches."""
        return self._manifest.branches

    @property
    def steps(self) -> list[int]:
        """Complete recorded steps, ascending."""
        return list(self._steps)

    # -- statistics (JSON only) ----------------------------------------------------------------

    def stats(self, step: int) -> dict[str, Any]:
        """Statistics of ``step`` without decoding masks (the ``.bin`` need not exist).

        ``{"loss": float | None, "density": {layer: {"gate": {"1": d, ...}, "weight": {...}}},
        ...}`` plus the producer's extra values; a density is the fraction of True bits, 0..1.
        """
        return self._read_step_json(self._check_step(step))["stats"]

    def summary(self) -> dict[str, Any]:
        """Per layer, kind and branch the mean density over all steps, from the JSON files only.

        ``{"steps": count, "first_step": int | None, "last_step": int | None,
        "loss_mean": float | None, "density": {layer: {"gate": {"1": mean, ...}, ...}}}``;
        ``loss_mean`` averages the steps whose loss is not null; means are None without steps.
        """
        sums = {item.name: {kind: {str(b): 0.0 for b in self._branch_ids()}
                            for kind in self._kinds(item)} for item in self.layers}
        losses = []
        for step in self._steps:
            stats = self.stats(step)
            if stats["loss"] is not None:
                losses.append(stats["loss"])
            for name, kinds in sums.items():
                for kind, per_branch in kinds.items():
                    for branch in per_branch:
                        per_branch[branch] += self._density(step, stats, name, kind, branch)
        count = len(self._steps)
        return {
            "steps": count,
            "first_step": self._steps[0] if count else None,
            "last_step": self._steps[-1] if count else None,
            "loss_mean": sum(losses) / len(losses) if losses else None,
            "density": {name: {kind: {b: (total / count if count else None)
                                      for b, total in per_branch.items()}
                               for kind, per_branch in kinds.items()}
                        for name, kinds in sums.items()},
        }

    # -- masks ---------------------------------------------------------------------------------

    def gate(self, step: int, layer: str, branch: int) -> np.ndarray:
        """Gate mask of ``layer`` for ``branch`` at ``step``.

        Read-only bool ``(N, Cout/s, Ho, Wo)``; TraceError if the layer records no gate mask.
        """
        item = self._layer(layer)
        self._check_branch(branch)
        if item.gate is None:
            raise TraceError(f"layer {layer!r} has no gate mask in this trace", path=self._root)
        entry = self._index(self._check_step(step)).entries[(layer, branch, "gate")]
        return self._decode(step, entry, None)

    def weight(self, step: int, layer: str, branch: int) -> np.ndarray | None:
        """Weight mask of ``layer`` for ``branch`` at ``step``, following references.

        Read-only bool ``(Cout, Cin/groups, kh, kw)``; None if the layer records no weight mask.
        """
        item = self._layer(layer)
        self._check_branch(branch)
        if item.weight is None:
            return None
        entry = self._index(self._check_step(step)).entries[(layer, branch, "weight")]
        return self._weight(step, entry, None)

    def weight_step(self, step: int, layer: str, branch: int) -> int | None:
        """The step that stores the weight mask in effect at ``step`` (``step`` itself unless
        unchanged since an earlier one); None if the layer records no weight mask."""
        item = self._layer(layer)
        self._check_branch(branch)
        if item.weight is None:
            return None
        entry = self._index(self._check_step(step)).entries[(layer, branch, "weight")]
        return self._resolve(step, entry)[0]

    def iter_steps(self) -> Iterator[StepMasks]:
        """Every step in order with all its masks; each ``.bin`` is read once."""
        for step in self._steps:
            yield self._step_masks(step)

    def step_masks(self, step: int) -> StepMasks:
        """All masks and statistics of one step; its ``.bin`` is read once."""
        return self._step_masks(self._check_step(step))

    def verify(self) -> None:
        """Decode and check every mask of every step; raises the first TraceError found."""
        for _ in self.iter_steps():
            pass

    # -- internals -----------------------------------------------------------------------------

    def _branch_ids(self) -> range:
        return range(1, self._manifest.branches + 1)

    @staticmethod
    def _kinds(item: TraceLayer) -> list[str]:
        return [kind for kind in MASK_KINDS if getattr(item, kind) is not None]

    def _layer(self, name: str) -> TraceLayer:
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise TraceError(f"no layer {name!r} in this trace", path=self._root) from None

    def _check_branch(self, branch: int) -> None:
        if branch not in self._branch_ids() or isinstance(branch, bool):
            raise TraceError(f"branch must be 1..{self._manifest.branches}, got {branch!r}",
                             path=self._root)

    def _check_step(self, step: int) -> int:
        if step not in self._step_set or isinstance(step, bool):
            span = f"{self._steps[0]}..{self._steps[-1]}" if self._steps else "none"
            raise TraceError(f"no step {step!r} in this trace (steps {span}, "
                             f"{len(self._steps)} recorded)", path=self._root)
        return step

    def _density(self, step: int, stats: dict[str, Any], name: str, kind: str,
                 branch: str) -> float:
        value = stats["density"].get(name)
        value = value.get(kind) if isinstance(value, dict) else None
        value = value.get(branch) if isinstance(value, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TraceError(f"stats.density.{name}.{kind}.{branch} is missing or not a number",
                             path=self._root, field=f"step {step}")
        return float(value)

    def _check_fields(self, data: dict[str, Any], known: Sequence[str], where: str) -> None:
        """Every known field present; an unknown one refused unless a newer minor version."""
        if self._strict:
            unknown = [key for key in data if key not in known]
            if unknown:
                raise TraceError(f"unknown field {unknown[0]!r}", path=self._root, field=where)
        for key in known:
            if key not in data:
                raise TraceError(f"missing field {key!r}", path=self._root, field=where)

    def _read_step_json(self, step: int) -> dict[str, Any]:
        name = f"step {step}: {STEPS_DIR}/{step_stem(step)}.json"
        data = load_json(step_json_path(self._root, step), self._root, name)
        self._check_fields(data, _STEP_KEYS, name)
        if data["step"] != step or isinstance(data["step"], bool):
            raise TraceError(f"step field is {data['step']!r}, expected {step}", path=self._root,
                             field=name)
        stats = data["stats"]
        if not isinstance(stats, dict) or not isinstance(stats.get("density"), dict):
            raise TraceError("stats must be an object with a density object", path=self._root,
                             field=name)
        loss = stats.get("loss")
        if loss is not None and (not isinstance(loss, int | float) or isinstance(loss, bool)):
            raise TraceError(f"stats.loss must be a number or null, got {loss!r}",
                             path=self._root, field=name)
        if not isinstance(data["masks"], list):
            raise TraceError("masks must be a list", path=self._root, field=name)
        return data

    def _index(self, step: int) -> _StepIndex:
        return self._indexes.get(step, lambda: self._parse_index(step))

    def _parse_index(self, step: int) -> _StepIndex:
        data = self._read_step_json(step)
        entries: dict[tuple[str, int, str], _Entry] = {}
        for i, raw in enumerate(data["masks"]):
            entry = self._parse_entry(step, i, raw)
            key = (entry.layer, entry.branch, entry.kind)
            if key in entries:
                raise TraceError("duplicate entry", path=self._root, field=mask_where(step, *key))
            entries[key] = entry
        for item in self.layers:
            for kind in self._kinds(item):
                for branch in self._branch_ids():
                    if (item.name, branch, kind) not in entries:
                        raise TraceError(f"missing layer: no entry in {step_stem(step)}.json",
                                         path=self._root,
                                         field=mask_where(step, item.name, branch, kind))
        return _StepIndex(step=step, stats=data["stats"], entries=entries)

    def _parse_entry(self, step: int, index: int, raw: Any) -> _Entry:
        where = f"step {step}, masks[{index}]"
        if not isinstance(raw, dict):
            raise TraceError("expected an object", path=self._root, field=where)
        for key in ("layer", "branch", "kind"):
            if key not in raw:
                raise TraceError(f"missing field {key!r}", path=self._root, field=where)
        layer, branch, kind = raw["layer"], raw["branch"], raw["kind"]
        if not isinstance(layer, str) or layer not in self._specs:
            raise TraceError(f"unknown layer {layer!r} (not in the manifest)", path=self._root,
                             field=where)
        if not isinstance(branch, int) or isinstance(branch, bool) \
                or branch not in self._branch_ids():
            raise TraceError(f"branch must be 1..{self._manifest.branches}, got {branch!r}",
                             path=self._root, field=where)
        if kind not in MASK_KINDS:
            raise TraceError(f"kind must be one of {MASK_KINDS}, got {kind!r}", path=self._root,
                             field=where)
        where = mask_where(step, layer, branch, kind)
        spec = getattr(self._specs[layer], kind)
        if spec is None:
            raise TraceError(f"the manifest declares no {kind} mask for this layer",
                             path=self._root, field=where)
        is_ref = "ref_step" in raw
        known = _REF_KEYS if is_ref else _DATA_KEYS
        self._check_fields(raw, known, where)
        if is_ref:
            ref = raw["ref_step"]
            if kind != "weight":
                raise TraceError("only weight masks can be references", path=self._root,
                                 field=where)
            problem = None
            if not _nonneg_int(ref):
                problem = "is not a step number"
            elif ref == step:
                problem = "points to its own step"
            elif ref > step:
                problem = "points to a later step (a reference names an earlier step)"
            elif ref not in self._step_set:
                problem = "points to a step that is not in this trace"
            if problem:
                raise TraceError(f"ref_step {abbreviate(ref)} {problem}", path=self._root,
                                 field=where)
            return _Entry(layer, branch, kind, spec.shape, ref_step=ref)
        shape = raw["shape"]
        if not isinstance(shape, list) or tuple(shape) != spec.shape:
            raise TraceError(f"shape mismatch with the manifest: got {shape!r}, manifest says "
                             f"{list(spec.shape)}", path=self._root, field=where)
        if raw["dtype"] != MASK_DTYPE:
            raise TraceError(f"unsupported dtype {raw['dtype']!r} (expected {MASK_DTYPE!r})",
                             path=self._root, field=where)
        if raw["codec"] not in CODECS:
            raise TraceError(f"unsupported codec {raw['codec']!r} (expected one of "
                             f"{', '.join(map(repr, CODECS))})", path=self._root, field=where)
        for key in ("offset", "length", "packed_bytes", "crc32", "ones"):
            if not _nonneg_int(raw[key]):
                raise TraceError(f"{key} must be a non-negative integer, got {raw[key]!r}",
                                 path=self._root, field=where)
        if raw["packed_bytes"] != packed_size(spec.shape):
            raise TraceError(f"packed_bytes {raw['packed_bytes']} does not match the shape "
                             f"(expected {packed_size(spec.shape)})", path=self._root,
                             field=where)
        if raw["ones"] > mask_size(spec.shape) or raw["crc32"] > 0xFFFFFFFF:
            raise TraceError("ones or crc32 out of range", path=self._root, field=where)
        return _Entry(layer, branch, kind, spec.shape, offset=raw["offset"],
                      length=raw["length"], packed_bytes=raw["packed_bytes"],
                      crc32=raw["crc32"], ones=raw["ones"], codec=raw["codec"])

    def _resolve(self, step: int, entry: _Entry) -> tuple[int, _Entry]:
        """The step that stores a weight mask and its entry (a reference points to it)."""
        if entry.ref_step is None:
            return step, entry
        target = self._index(entry.ref_step).entries[(entry.layer, entry.branch, entry.kind)]
        if target.ref_step is not None:
            raise TraceError(f"ref_step {entry.ref_step} points to a step that holds a reference, "
                             f"not the mask", path=self._root,
                             field=mask_where(step, entry.layer, entry.branch, entry.kind))
        return entry.ref_step, target

    def _weight(self, step: int, entry: _Entry, blob: bytes | None) -> np.ndarray:
        stored_step, stored = self._resolve(step, entry)
        return self._weights.get((stored_step, entry.layer, entry.branch), lambda: self._decode(
            stored_step, stored, blob if stored_step == step else None))

    def step_packed(self, step: int) -> PackedStepMasks:
        """Every mask of ``step`` with the gates left bit-packed (what the replay reads: no
        unpacking). Gates are checked like :meth:`step_masks`, each when first looked up."""
        step = self._check_step(step)

        def packed(entry: _Entry, blob: bytes | None) -> tuple[_Entry, bytes | None]:
            return entry, blob

        def decode(item: tuple[_Entry, bytes | None]) -> PackedMask:
            entry, blob = item
            return PackedMask(self._decode_packed(step, entry, blob), entry.shape, entry.ones)

        gates, weights, stats, selects = self._read_step(step, packed)
        return PackedStepMasks(step, LazyGates(gates, decode), weights, stats, selects)

    def _step_masks(self, step: int) -> StepMasks:
        return StepMasks(step, *self._read_step(
            step, lambda entry, blob: self._decode(step, entry, blob)))

    def _read_step(self, step: int, decode_gate: Callable[[_Entry, bytes | None], Any]
                   ) -> tuple[dict[MaskKey, Any], dict[MaskKey, np.ndarray], dict[str, Any],
                              dict[MaskKey, np.ndarray]]:
        """(gates decoded by ``decode_gate``, weights, statistics, input selections: small,
        decoded) of ``step``; its ``.bin`` is read once."""
        index = self._index(step)
        has_data = any(entry.ref_step is None for entry in index.entries.values())
        blob = self._read_bin(step) if has_data else None
        gates: dict[MaskKey, Any] = {}
        weights: dict[MaskKey, np.ndarray] = {}
        selects: dict[MaskKey, np.ndarray] = {}
        for item in self.layers:
            for branch in self._branch_ids():
                if item.gate is not None:
                    entry = index.entries[(item.name, branch, "gate")]
                    gates[(item.name, branch)] = decode_gate(entry, blob)
            for branch in self._branch_ids():
                if item.weight is not None:
                    entry = index.entries[(item.name, branch, "weight")]
                    weights[(item.name, branch)] = self._weight(step, entry, blob)
                if item.select is not None:
                    entry = index.entries[(item.name, branch, "select")]
                    selects[(item.name, branch)] = self._decode(step, entry, blob)
        return gates, weights, _copy_json(index.stats), selects

    def _missing_bin(self, step: int) -> TraceError:
        return TraceError(f"missing mask data file steps/{step_stem(step)}.bin", path=self._root,
                          field=f"step {step}")

    def _read_bin(self, step: int) -> bytes | mmap.mmap:
        """The step's ``.bin``, mapped read-only where the OS allows (no copy: masks are views
        of the page cache, and the writer replaces files by rename, never in place), else read."""
        handle = self._open_bin(step)
        try:
            with handle:
                if os.name == "posix" and os.fstat(handle.fileno()).st_size > 0:
                    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                    try:
                        return mmap.mmap(handle.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
                    except OSError:
                        pass
                return handle.read()
        except OSError as error:
            raise self._cannot_read_bin(step, error) from None

    def _open_bin(self, step: int) -> BinaryIO:
        """The step's ``.bin`` open for reading; TraceError naming it otherwise."""
        try:
            return open(step_bin_path(self._root, step), "rb")
        except FileNotFoundError:
            raise self._missing_bin(step) from None
        except OSError as error:
            raise self._cannot_read_bin(step, error) from None

    def _cannot_read_bin(self, step: int, error: OSError) -> TraceError:
        return cannot_read(self._root, f"step {step}: {STEPS_DIR}/{step_stem(step)}.bin", error)

    def _truncated(self, step: int, entry: _Entry, size: int) -> TraceError:
        return TraceError(f"truncated mask data (payload ends at byte "
                          f"{entry.offset + entry.length}, {step_stem(step)}.bin has {size})",
                          path=self._root,
                          field=mask_where(step, entry.layer, entry.branch, entry.kind))

    def _read_payload(self, step: int, entry: _Entry) -> bytes:
        handle = self._open_bin(step)
        try:
            with handle:
                size = os.fstat(handle.fileno()).st_size
                if entry.offset + entry.length > size:
                    raise self._truncated(step, entry, size)
                handle.seek(entry.offset)
                return handle.read(entry.length)
        except OSError as error:
            raise self._cannot_read_bin(step, error) from None

    def _decode(self, step: int, entry: _Entry, blob: bytes | None) -> np.ndarray:
        """Payload -> checked read-only bool array (blob: the whole ``.bin``, or None to read)."""
        mask = unpack_mask(self._decode_packed(step, entry, blob), entry.shape)
        mask.flags.writeable = False
        return mask

    def _decode_packed(self, step: int, entry: _Entry, blob: bytes | None) -> np.ndarray:
        """Payload -> checked read-only packed bits, uint8 (blob: the whole ``.bin``, or None
        to read just this payload)."""
        where = mask_where(step, entry.layer, entry.branch, entry.kind)
        if blob is None:
            payload: bytes | memoryview = self._read_payload(step, entry)
        elif entry.offset + entry.length > len(blob):
            raise self._truncated(step, entry, len(blob))
        else:
            payload = memoryview(blob)[entry.offset:entry.offset + entry.length]
        if entry.codec == RAW_CODEC:
            if entry.length != entry.packed_bytes:
                raise TraceError(f"length {entry.length} differs from packed_bytes "
                                 f"{entry.packed_bytes} (corrupt mask)", path=self._root,
                                 field=where)
            return self._checked(np.frombuffer(payload, dtype=np.uint8), entry, where)
        stream = zlib_fast.decompressobj()
        try:
            packed = stream.decompress(payload, entry.packed_bytes + 1)
        except zlib_fast.error as error:
            raise TraceError(f"zlib error: {error} (corrupt mask)", path=self._root,
                             field=where) from None
        if len(packed) != entry.packed_bytes:
            raise TraceError(f"decompressed length {len(packed)} differs from packed_bytes "
                             f"{entry.packed_bytes} (corrupt mask)", path=self._root, field=where)
        if not stream.eof or stream.unused_data:
            raise TraceError("zlib stream incomplete or followed by extra bytes (corrupt mask)",
                             path=self._root, field=where)
        return self._checked(np.frombuffer(packed, dtype=np.uint8), entry, where)

    def _checked(self, packed: np.ndarray, entry: _Entry, where: str) -> np.ndarray:
        """``packed`` (read-only) after the crc32 and ones checks of its entry."""
        if _crc32(packed) != entry.crc32:
            raise TraceError("crc32 mismatch (corrupt mask)", path=self._root, field=where)
        ones = packed_ones(packed, mask_size(entry.shape), self._count_words)
        if ones != entry.ones:
            raise TraceError(f"{ones} ones, the step file says {entry.ones} (corrupt mask)",
                             path=self._root, field=where)
        return packed


def _copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists and immutable scalars): what copy.deepcopy
    gives, without its memo and type dispatch."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def resolve_trace_dir(path: str | os.PathLike[str]) -> Path:
    """A trace directory, or the ``trace/`` inside a run directory of ``accelsim record``."""
    root = Path(path)
    if not (root / MANIFEST_NAME).exists() and (root / "trace" / MANIFEST_NAME).exists():
        return root / "trace"
    return root


def open_trace(path: str | os.PathLike[str]) -> TraceReader:
    """Open the trace directory ``path`` for reading (validates the manifest)."""
    return TraceReader(path)
