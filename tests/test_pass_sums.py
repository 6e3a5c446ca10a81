"""The packed-bit fast path (per-pass sums) against the per-pixel work matrix it replaces.

The matrix path is itself checked against the cycle-stepped reference model
(``test_sparse_reference.py``); here the shapes are larger (images of more than 64 pixels,
pixel counts that are not multiples of 64, up to 70 queue rows) so that bit chunks straddle
images, passes and words.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.bd import bd_sums, bd_work
from accelsim.engine.fw import fw_sums, fw_work
from accelsim.engine.masks import BasePath, LayerMasks, PackedGate
from accelsim.engine.schedule import pass_rows, schedule, unit_width
from accelsim.engine.views import MaskViews
from accelsim.engine.wg import wg_sums, wg_work
from accelsim.kernels import as_words, residue_counts, row_popcounts, uniform_group_ones
from accelsim.network import conv


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6),
       st.one_of(st.integers(1, 200), st.sampled_from([64, 128, 192, 320, 512, 1024])),
       st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32, 64]), st.integers(1, 80)),
       st.integers(1, 8), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_residue_counts_equal_counting_by_hand(images: int, n_rows: int, pixels: int,
                                               rows: int, sync: int, density: float,
                                               seed: int) -> None:
    gate = np.random.default_rng(seed).random((images, n_rows, pixels)) < density
    bits = as_words(PackedGate.from_bool(gate).data)
    lo = np.array([0, n_rows - 1, 0, 0])
    hi = np.array([1, n_rows, n_rows, 1])
    target = np.array([0, 1, 2, 1])  # the last set adds to the second set's counts
    got = residue_counts(bits, images, n_rows, pixels, lo, hi, target, 3, rows, rows * sync)
    expected = np.zeros_like(got)
    for s in range(4):
        for m in np.flatnonzero(gate[:, lo[s]:hi[s], :].any(axis=1).ravel()):
            expected[m // (rows * sync), target[s], m % rows] += 1
    assert (got == expected).all()
    per_row = pass_rows(images * pixels, rows, rows * sync)
    assert per_row.sum() == images * pixels
    assert (got[:, 2, :] <= per_row).all()
    # single-row sets summed into targets (BD's gate-group classes), in row order or not
    rng = np.random.default_rng(seed + 1)
    order = np.arange(n_rows) if density < 0.5 else rng.permutation(n_rows)
    target = rng.integers(0, 2, n_rows)
    got = residue_counts(bits, images, n_rows, pixels, order, order + 1, target, 2, rows,
                         rows * sync)
    expected = np.zeros_like(got)
    m = np.arange(images * pixels)
    for s, g in enumerate(order):
        np.add.at(expected, (m // (rows * sync), target[s], m % rows), gate[:, g, :].ravel())
    assert (got == expected).all()
    assert (row_popcounts(bits, images, n_rows, pixels) == gate.sum(axis=(0, 2))).all()


@pytest.mark.parametrize(("pixels", "rows", "sync", "images", "n_rows"),
                         [(64, 64, 1, 2, 300), (16, 16, 4, 2, 300), (640, 16, 64, 2, 300),
                          (48, 12, 4, 2, 300), (16, 128, 1, 2, 300), (16, 16, 4, 8, 300),
                          (16, 16, 4, 8, 301)])
def test_residue_counts_of_long_runs_into_one_target(pixels: int, rows: int, sync: int,
                                                     images: int, n_rows: int) -> None:
    """All-ones rows summed into one target: byte-lane counters must be folded before they
    wrap (at 255 words), in the fast and the general path alike (301 rows: image blocks that
    do not start on a word)."""
    gate = np.ones((images, n_rows, pixels), dtype=bool)
    gate[1, ::7, ::3] = False
    bits = as_words(PackedGate.from_bool(gate).data)
    index = np.arange(n_rows)
    got = residue_counts(bits, images, n_rows, pixels, index, index + 1,
                         np.zeros(n_rows, np.int64), 1, rows, rows * sync)
    expected = np.zeros_like(got)
    m = np.arange(images * pixels)
    per_pixel = gate.sum(axis=1).ravel()
    np.add.at(expected, (m // (rows * sync), 0, m % rows), per_pixel)
    assert (got == expected).all()


@pytest.mark.parametrize(("pixels", "rows", "sync"), [(64, 64, 300), (128, 16, 1024),
                                                   (16, 16, 400), (1024, 16, 64),
                                                   (512, 16, 2048), (48, 16, 1000),
                                                   (8, 8, 3), (4, 16, 5), (32, 64, 300)])
def test_residue_counts_of_unit_ors_over_long_passes(pixels: int, rows: int, sync: int) -> None:
    """OR-sets over passes of hundreds of words (byte lanes folded before they wrap)."""
    images, n_rows = 300, 4
    gate = np.ones((images, n_rows, pixels), dtype=bool)
    gate[::5, 1:, ::3] = False
    gate[::5, 0, :] = False
    bits = as_words(PackedGate.from_bool(gate).data)
    lo, hi = np.array([0, 2]), np.array([2, 4])
    got = residue_counts(bits, images, n_rows, pixels, lo, hi, np.arange(2), 2, rows,
                         rows * sync)
    expected = np.zeros_like(got)
    m = np.arange(images * pixels)
    for s in range(2):
        np.add.at(expected, (m // (rows * sync), s, m % rows),
                  gate[:, lo[s]:hi[s], :].any(axis=1).ravel())
    assert (got == expected).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 24), st.sampled_from([8, 16, 24, 32, 48, 64, 128]),
       st.sampled_from([1, 2, 4, 8, 16]), st.integers(8, 40), st.floats(0.0, 1.0),
       st.integers(0, 2**32 - 1))
def test_residue_counts_of_single_rows_over_many_images(images: int, n_rows: int, pixels: int,
                                                        rows: int, images_per_pass: int,
                                                        density: float, seed: int) -> None:
    """Single gate rows with a target each over passes of whole images: gate rows in any
    order, some not counted, bytes of one word in different rows (P < 64 or not dividing
    it), passes of up to 40 images and more than 255 images (byte lanes folded before they
    wrap)."""
    rows = rows if pixels % rows == 0 else 8
    n_rows *= 64 // math.gcd(pixels, 64)  # an image's block is whole words
    rng = np.random.default_rng(seed)
    gate = rng.random((images, n_rows, pixels)) < density
    bits = as_words(PackedGate.from_bool(gate).data)
    order = rng.permutation(n_rows)[:max(1, n_rows - 2)]
    target = np.arange(order.shape[0]) % 3 if seed % 2 else np.arange(order.shape[0])
    target = target[rng.permutation(order.shape[0])]
    pass_len = pixels * images_per_pass
    got = residue_counts(bits, images, n_rows, pixels, order, order + 1, target,
                         int(target.max()) + 1, rows, pass_len)
    expected = np.zeros_like(got)
    m = np.arange(images * pixels)
    for s, g in enumerate(order):
        np.add.at(expected, (m // pass_len, target[s], m % rows), gate[:, g, :].ravel())
    assert (got == expected).all()


@pytest.mark.parametrize(("pixels", "rows"), [(16, 16), (64, 16), (24, 8)])
def test_residue_counts_fold_before_bytes_wrap(pixels: int, rows: int) -> None:
    """Passes of 600 images whose gate rows are all ones: a byte lane counting the same bit
    position over a pass must be folded before it passes 255."""
    images, n_rows = 600, 8
    gate = np.ones((images, n_rows, pixels), dtype=bool)
    gate[::7, 3, :] = False
    bits = as_words(PackedGate.from_bool(gate).data)
    index = np.arange(n_rows)
    got = residue_counts(bits, images, n_rows, pixels, index, index + 1, index, n_rows, rows,
                         pixels * images)
    expected = np.zeros_like(got)
    m = np.arange(images * pixels)
    for g in range(n_rows):
        np.add.at(expected, (m // (pixels * images), g, m % rows), gate[:, g, :].ravel())
    assert (got == expected).all()


@settings(deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 4), st.integers(1, 90),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_uniform_group_ones(images: int, group: int, n_groups: int, pixels: int,
                            uniform: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.random((images, n_groups, pixels)) < 0.5
    gate = np.repeat(groups, group, axis=1)
    if not uniform:
        gate[rng.integers(images), rng.integers(n_groups * group), rng.integers(pixels)] ^= True
    bits = as_words(PackedGate.from_bool(gate).data)
    got = uniform_group_ones(bits, images, n_groups * group, pixels, group)
    grouped = gate.reshape(images, n_groups, group, pixels)
    is_uniform = (grouped.all(axis=2) == grouped.any(axis=2)).all()
    assert got == (int(grouped.any(axis=2).sum()) if is_uniform else -1)


@st.composite
def cases(draw: st.DrawFn):
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 4))
    cout = groups * draw(st.sampled_from([2, 4, 8]))
    size = draw(st.sampled_from([3, 8, 9, 12]))
    layer = conv("l", cin, cout, draw(st.sampled_from([1, 3])), 1, 1, size, size,
                 draw(st.integers(1, 3)))
    f, k = layer.cout, layer.k_per_group
    pixels = layer.h_out * layer.w_out
    s = draw(st.sampled_from([s for s in (1, 2) if (f // groups) % s == 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gate = rng.random((layer.batch, f // s, pixels)) < draw(st.floats(0.05, 0.95))
    weight = rng.random((f, k)) < 0.6 if draw(st.booleans()) else None
    base = BasePath.of_layer(layer, groups, (1, 0)) if groups > 1 else None
    overrides = {
        "pe_array.rows": draw(st.integers(1, 70)),
        "pe_array.cols": draw(st.integers(1, 3)),
        "pe_array.vector_width": draw(st.integers(1, 4)),
        "pe_array.sync_tiles": draw(st.integers(1, 4)),
        "decoder.skip_granularity": draw(st.sampled_from(["element", "vector", "pe_row"])),
        "decoder.indices_per_cycle": draw(st.integers(1, 8)),
        "decoder.compaction": False,
        "sparsity_support.gate_group_size": 1,
    }
    masks = LayerMasks(packed_gate=PackedGate.from_bool(gate), gate_group_size=s, base=base,
                       weight=weight, gating_groups=groups,
                       dense_weight_gradient=draw(st.booleans()))
    return layer, masks, overrides, draw(st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_pass_sums_schedule_like_the_work_matrix(fp8_hw: HardwareConfig, case) -> None:
    layer, masks, overrides, use_gate = case
    hw = with_overrides(fp8_hw, overrides)
    unit = unit_width(hw)
    rows, pass_len = hw.pe_array.rows, hw.pe_array.rows * hw.pe_array.sync_tiles
    use_weight = masks.weight is not None
    if not (use_gate or use_weight):
        use_gate = True
    views = MaskViews(masks)  # one job's views, shared by both paths as in a replay
    matrix = schedule(fw_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight,
                              compaction=False), hw, unit)
    sums = schedule(fw_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                            use_weight=use_weight), hw, unit)
    assert sums == matrix
    matrix = schedule(bd_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight),
                      hw, unit)
    sums = schedule(bd_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                            use_weight=use_weight), hw, unit)
    assert sums == matrix
    matrix = schedule(wg_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight,
                              rows=rows, pass_len=pass_len), hw, unit)
    sums = schedule(wg_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                            use_weight=use_weight), hw, unit)
    assert sums == matrix


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 2), st.sampled_from([1, 2, 4, 8]), st.sampled_from([8, 16, 24]),
       st.integers(1, 9), st.sampled_from([1, 2, 4, 8]),
       st.sampled_from([0.02, 0.3, 0.9]), st.booleans(), st.integers(0, 2**32 - 1))
def test_gate_index_from_packed_bits(fp8_hw: HardwareConfig, images: int, group: int,
                                     channels: int, size: int, hw_group: int, density: float,
                                     uniform: bool, seed: int) -> None:
    """Pricing a gate from the trace's packed bits equals pricing the unpacked bool gate."""
    from accelsim.engine.indices import gate_index, gate_index_packed
    from accelsim.trace import PackedMask
    rng = np.random.default_rng(seed)
    gate = rng.random((images, channels // group, size, size)) < density
    if uniform and hw_group > group and (channels // group) % (hw_group // group) == 0:
        gate = np.repeat(gate[:, ::hw_group // group], hw_group // group, axis=1)
    hw = with_overrides(fp8_hw, {"sparsity_support.gate_group_size": hw_group,
                                 "pe_array.vector_width": 1})
    packed = PackedMask(PackedGate.from_bool(gate).data, gate.shape, int(gate.sum()))
    assert gate_index_packed(packed, group, hw, "g") == gate_index(gate, group, hw, "g")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(1, 7),
       st.integers(0, 2**32 - 1))
def test_sum_kernels_equal_numpy(passes: int, classes: int, sets: int, rows: int,
                                 seed: int) -> None:
    """diagonal_sums and coefficient_sums against numpy broadcasting and einsum."""
    from accelsim.kernels import coefficient_sums, diagonal_sums
    rng = np.random.default_rng(seed)
    fixed = rng.integers(0, 1000, (passes, classes, rows))
    counts = rng.integers(0, 50, (passes, classes, rows))
    scale = rng.integers(0, 30, classes)
    sums, per_class, totals = diagonal_sums(fixed, counts, scale)
    assert (sums == fixed + counts * scale[None, :, None]).all()
    assert (per_class == counts.sum(axis=2)).all()
    assert (totals == counts.sum(axis=(0, 2))).all()
    set_counts = rng.integers(0, 50, (passes, sets, rows)) * (rng.random((passes, sets, rows))
                                                              < 0.7)
    coef = rng.integers(0, 30, (classes, sets))
    sums, per_pass = coefficient_sums(fixed, set_counts, coef)
    assert (sums == fixed + np.einsum("pqr,cq->pcr", set_counts, coef)).all()
    assert (per_pass == set_counts.sum(axis=(1, 2))).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.sampled_from([1, 2, 4, 8]),
       st.sampled_from([1, 2, 4, 8]), st.one_of(st.integers(1, 100), st.just(256)),
       st.sampled_from([4, 16]), st.integers(0, 2**32 - 1))
def test_counts_shared_between_units_and_groups(images: int, groups: int, group_size: int,
                                                unit: int, pixels: int, rows: int,
                                                seed: int) -> None:
    """Units inside one gate group take the group's counts, and class sums are formed from
    the per-group counts once those exist: both equal counting the bits directly, in either
    order of the calls (class_sums against numpy too)."""
    from accelsim.kernels import class_sums
    rng = np.random.default_rng(seed)
    gate = PackedGate.from_bool(rng.random((images, groups, pixels)) < 0.4)
    classes = rng.integers(0, 3, groups)
    classes[0] = 2  # three classes
    pass_len = rows * 2
    words, index = as_words(gate.data), np.arange(groups)
    first = np.arange(0, groups * group_size, unit)
    last = np.minimum(first + unit, groups * group_size) - 1
    direct_units = residue_counts(words, images, groups, pixels, first // group_size,
                                  last // group_size + 1, np.arange(first.size), first.size,
                                  rows, pass_len)
    direct_classes = residue_counts(words, images, groups, pixels, index, index + 1, classes,
                                    3, rows, pass_len)
    per_group = residue_counts(words, images, groups, pixels, index, index + 1, index, groups,
                               rows, pass_len)
    expected = np.zeros_like(direct_classes)
    np.add.at(expected, (slice(None), classes, slice(None)), per_group)
    assert (class_sums(per_group, classes, 3) == expected).all()
    for units_first in (True, False):
        views = MaskViews(LayerMasks(packed_gate=gate, gate_group_size=group_size))
        calls = [lambda m=views: m.unit_counts(unit, rows, pass_len),
                 lambda m=views: m.group_counts(rows, pass_len, classes)]
        got = [call() for call in (calls if units_first else calls[::-1])]
        units, by_class = got if units_first else got[::-1]
        assert (units == direct_units).all()
        assert (by_class == direct_classes).all()


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 300), st.integers(1, 5), st.sampled_from([1, 2, 4, 8, 16]),
       st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_pass_row_sums_equal_numpy(n_rows: int, n_cols: int, rows: int, tiles: int,
                                   seed: int) -> None:
    """pass_row_sums (numba) against padding to whole passes and summing with numpy."""
    from accelsim.kernels import pass_row_sums
    pass_len = rows * tiles
    values = np.random.default_rng(seed).integers(0, 1000, (n_rows, n_cols)).astype(np.int32)
    passes = -(-n_rows // pass_len)
    padded = np.zeros((passes * pass_len, n_cols), dtype=np.int64)
    padded[:n_rows] = values
    expected = padded.reshape(passes, tiles, rows, n_cols).sum(axis=1).transpose(0, 2, 1)
    assert (pass_row_sums(values, rows, pass_len) == expected).all()


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 5), st.sampled_from([1, 2, 4, 8]), st.integers(1, 4), st.integers(1, 3),
       st.one_of(st.integers(1, 9), st.sampled_from([8, 16, 24])), st.integers(0, 2**32 - 1))
def test_weight_kernels_equal_numpy(outer: int, m: int, blocks: int, inner: int, unit: int,
                                    seed: int) -> None:
    """nm_max_kept, row_ones, unit_or (numba) and unit_any against plain numpy reductions."""
    from accelsim.engine.masks import unit_any
    from accelsim.kernels import nm_max_kept, row_ones, unit_or
    mask = np.random.default_rng(seed).random((outer, blocks * m, inner)) < 0.5
    expected = mask.reshape(outer, blocks, m, inner).sum(axis=2).max()
    assert nm_max_kept(mask.view(np.uint8), m) == expected
    flat = mask.reshape(outer, -1)
    assert (row_ones(flat.view(np.uint8)) == flat.sum(axis=1)).all()
    for axis in (0, 1):
        length = flat.shape[axis]
        groups = [np.take(flat, range(i, min(i + unit, length)), axis=axis).any(axis=axis)
                  for i in range(0, length, unit)]
        expected_any = np.stack(groups, axis=axis)
        assert (unit_or(np.ascontiguousarray(flat).view(np.uint8), unit, axis)
                == expected_any).all()
        assert (unit_any(flat, unit, axis) == expected_any).all()  # word path when unit % 8 == 0
