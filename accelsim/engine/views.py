"""The derived views of one job's masks, each computed once: what the phases read besides the
masks' own fields.

:class:`MaskViews` wraps a :class:`~accelsim.engine.masks.LayerMasks` (a plain value) for one
job. Views of the gate bits (per-unit and per-group counts, per-pixel views, per-channel counts)
live as long as the views object, one step's job; views that depend only on the layer's shape,
its weight mask, its base path and the hardware (unit structure, BD classes, the phases' plans)
go to ``structure``, a store the replay keeps per layer, branch and stored weight mask
(:class:`accelsim.engine.cache.ReplayCache`), so the steps that use the same masks share them.
Every key names what its value is computed from, apart from the masks the store belongs to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from accelsim.engine.masks import (
    GateViews,
    LayerMasks,
    PackedGate,
    as_bytes,
    unit_any,
)
from accelsim.kernels import class_sums, gate_views, residue_counts, row_popcounts


def memo(store: dict, key: Hashable, make: Callable[[], Any]) -> Any:
    """``store[key]``, made by ``make()`` the first time."""
    if key not in store:
        store[key] = make()
    return store[key]


class MaskViews:
    """One job's masks (``masks``) and their derived views (see the module docstring).
    ``structure``: where views that outlive the step are kept (None: with this job's own)."""

    def __init__(self, masks: LayerMasks, structure: dict | None = None) -> None:
        self.masks = masks
        self._job: dict[Hashable, Any] = {}
        self._structure = structure if structure is not None else self._job

    def without_weights(self) -> MaskViews:
        """The same gate without any weight mask or N:M pattern (its own structure store:
        the structure of the weight mask does not apply)."""
        return MaskViews(dataclasses.replace(self.masks, weight=None, nm=None,
                                             nm_transposed=False))

    # -- the two stores -----------------------------------------------------------------------

    def per_job(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` kept for this job (it reads the gate bits)."""
        return memo(self._job, key, make)

    def structure(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` kept with the layer's weight mask and base path (it reads neither the
        gate bits nor anything but the layer's shape, the key and the hardware in the key)."""
        return memo(self._structure, key, make)

    # -- the gate -----------------------------------------------------------------------------

    @property
    def gate_bool(self) -> np.ndarray:
        """The gate as bool (N, F/s, P)."""
        masks = self.masks
        if masks.gate is not None:
            return masks.gate
        assert masks.packed_gate is not None
        return self.per_job("gate_bool", masks.packed_gate.unpack)

    @property
    def gate_bits(self) -> PackedGate:
        """The gate bit-packed."""
        masks = self.masks
        if masks.packed_gate is not None:
            return masks.packed_gate
        assert masks.gate is not None
        return self.per_job("gate_bits", lambda: PackedGate.from_bool(masks.gate))

    def unit_counts(self, unit: int, rows: int, pass_len: int) -> np.ndarray:
        """int64 (passes, units, rows): pixels of each pass and queue row where any lane of
        the ``unit``-lane unit is active. When every unit lies inside one gate group (s a
        multiple of ``unit``: SCDG on vector units, element granularity) a unit's counts are
        its group's, so the groups are counted once (:meth:`group_counts`) and shared."""
        bits = self.gate_bits
        n, groups, pixels = bits.shape
        s = self.masks.gate_group_size

        def count() -> np.ndarray:
            first = np.arange(0, groups * s, unit)
            if s % unit == 0:
                per_group = self.group_counts(rows, pass_len)
                return per_group if unit == s else np.ascontiguousarray(
                    per_group[:, first // s, :])
            last = np.minimum(first + unit, groups * s) - 1
            return residue_counts(bits.words, n, groups, pixels, first // s, last // s + 1,
                                  np.arange(first.shape[0]), first.shape[0], rows, pass_len)

        return self.per_job(("units", unit, rows, pass_len), count)

    def keep_unit_totals(self, unit: int, rows: int, pass_len: int,
                         totals: np.ndarray) -> None:
        """Keep :meth:`unit_totals` that a phase computed on the way (FW's
        :func:`~accelsim.kernels.diagonal_sums`), for WG of the same job's masks."""
        self._job.setdefault(("unit_totals", unit, rows, pass_len), totals)

    def unit_totals(self, unit: int, rows: int, pass_len: int) -> np.ndarray:
        """int64 (units,): pixels where any lane of each unit is active, over all passes
        (:meth:`unit_counts` summed one axis at a time, unless kept already)."""
        return self.per_job(("unit_totals", unit, rows, pass_len),
                            lambda: self.unit_counts(unit, rows, pass_len).sum(axis=0).sum(axis=1))

    def group_counts(self, rows: int, pass_len: int, classes: np.ndarray | None = None,
                     n_classes: int = 0) -> np.ndarray:
        """int64 (passes, C, rows): active gate groups of each pass and queue row, summed over
        the groups of each class (``classes``: int64 (F/s,) class of every group, C =
        ``n_classes``, or its maximum + 1 when 0; None: every group its own class). Class
        sums come from the per-group counts when those are already there (:meth:`unit_counts`
        made them), else from one pass over the bits."""
        per_group = ("groups", rows, pass_len, None)
        if classes is None:
            return self.per_job(per_group, lambda: self._count_groups(
                rows, pass_len, None, self.gate_bits.shape[1]))

        def count() -> np.ndarray:
            n_sets = n_classes or int(classes.max()) + 1
            if per_group in self._job:
                return class_sums(self._job[per_group], classes, n_sets)
            return self._count_groups(rows, pass_len, classes, n_sets)

        return self.per_job(("groups", rows, pass_len, classes.tobytes()), count)

    def _count_groups(self, rows: int, pass_len: int, classes: np.ndarray | None,
                      n_classes: int) -> np.ndarray:
        """:func:`residue_counts` of every gate group into ``classes`` (None: its own)."""
        bits = self.gate_bits
        n, groups, pixels = bits.shape
        index = np.arange(groups)
        return residue_counts(bits.words, n, groups, pixels, index, index + 1,
                              index if classes is None else classes, n_classes, rows, pass_len)

    @property
    def channel_counts(self) -> np.ndarray:
        """int64 (F,): active pixels of every output channel."""
        def count() -> np.ndarray:
            bits = self.gate_bits
            n, groups, pixels = bits.shape
            return np.repeat(row_popcounts(bits.words, n, groups, pixels),
                             self.masks.gate_group_size)

        return self.per_job("channels", count)

    def gate_views(self, unit: int) -> GateViews:
        """Per-pixel views of the gate for ``unit`` lanes (the work-matrix path)."""
        assert self.masks.has_gate

        def views() -> GateViews:
            gate = self.gate_bool
            s = self.masks.gate_group_size
            active, lanes, packed, per_pixel = gate_views(as_bytes(gate), s, unit,
                                                          gate.shape[1] * s)
            return GateViews(active, lanes, packed.view(np.uint64), per_pixel)

        return self.per_job(("views", unit), views)

    # -- the weight mask and the base path ----------------------------------------------------

    def weight_any(self, unit: int, axis: int) -> np.ndarray:
        """:func:`~accelsim.engine.masks.unit_any` of the (F, K) weight mask: axis 0 over
        output channels, 1 over reduction columns."""
        weight = self.masks.weight
        assert weight is not None
        return self.structure(("weight", unit, axis), lambda: unit_any(weight, unit, axis))

    def base_any_over_f(self, unit: int) -> np.ndarray:
        """:meth:`~accelsim.engine.masks.BasePath.any_over_f` of the base path."""
        base = self.masks.base
        assert base is not None
        return self.structure(("base_f", unit), lambda: base.any_over_f(unit))

    def base_any_over_k(self, unit: int) -> np.ndarray:
        """:meth:`~accelsim.engine.masks.BasePath.any_over_k` of the base path."""
        base = self.masks.base
        assert base is not None
        return self.structure(("base_k", unit), lambda: base.any_over_k(unit))


def as_views(masks: LayerMasks | MaskViews) -> MaskViews:
    """``masks`` with their views: as given, or new ones kept with this job alone."""
    return masks if isinstance(masks, MaskViews) else MaskViews(masks)
