"""Tests of accelsim.sparsity: exact index bits, checked by round trips through the reference codec
in tests/index_codec.py (with its decoder work and stored values)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accelsim.errors import InputError
from accelsim.sparsity import (
    FORMATS,
    IndexParams,
    all_index_bits,
    best_format,
    expand_groups,
    index_bits,
    index_reduction,
    nm_fits,
)
from tests.index_codec import EncodedIndex, decode, decoder_ops, encode, stored_values

UNSTRUCTURED = ("bitmap", "rle", "csr", "coo")
FAST = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------------------------
# strategies


@st.composite
def fill(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """A bool array of ``shape``: all-False, all-True or random at a drawn density."""
    kind = draw(st.sampled_from(["zeros", "ones", "random", "random"]))
    if kind == "zeros":
        return np.zeros(shape, dtype=bool)
    if kind == "ones":
        return np.ones(shape, dtype=bool)
    density = draw(st.sampled_from([0.02, 0.1, 0.3, 0.5, 0.8, 0.95]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.random(shape) < density


@st.composite
def masks(draw: st.DrawFn, min_side: int = 1, max_side: int = 7) -> np.ndarray:
    """Masks of rank 1-4 (size-1 dims included)."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=min_side, max_side=max_side))
    return draw(fill(shape))


@st.composite
def nm_masks(draw: st.DrawFn) -> tuple[np.ndarray, IndexParams]:
    """An N:M mask along a drawn axis: every group of M keeps between 0 and N elements."""
    m = draw(st.sampled_from([1, 2, 4, 5, 8, 16, 20]))
    n = draw(st.integers(0, m))
    rank = draw(st.integers(1, 4))
    axis = draw(st.integers(-rank, rank - 1))
    shape = list(draw(hnp.array_shapes(min_dims=rank, max_dims=rank, min_side=1, max_side=4)))
    shape[axis] = m * draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = int(np.prod(shape)) // m
    keep = rng.integers(0, n + 1, size=(groups, 1))  # kept elements per group
    rows = rng.random((groups, m)).argsort(axis=1) < keep  # (groups, M), keep[g] True per row
    moved = [*np.delete(shape, axis % rank), m]
    moved.insert(axis % rank, shape[axis] // m)
    flat = np.moveaxis(rows.reshape(moved), -1, axis % rank + 1)
    return flat.reshape(shape), IndexParams(nm=(n, m), nm_axis=axis)


@st.composite
def group_masks(draw: st.DrawFn) -> tuple[np.ndarray, IndexParams]:
    """A mask built from a group-level mask: every group is all-True or all-False."""
    rank = draw(st.integers(1, 4))
    group_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    gshape = draw(hnp.array_shapes(min_dims=rank, max_dims=rank, min_side=1, max_side=4))
    return expand_groups(draw(fill(gshape)), group_shape), IndexParams(group_shape=group_shape)


# ---------------------------------------------------------------------------------------------
# slow, readable references


def slow_rle(mask: np.ndarray, run_bits: int) -> list[tuple[int, bool]]:
    """The rle entries (run, is_filler) of an encoder that walks the C-order mask one element at
    a time: a zero run that reaches 2**run_bits zeros emits a filler (max run + one zero)."""
    max_run = 2**run_bits - 1
    entries: list[tuple[int, bool]] = []
    zeros = 0
    for kept in mask.reshape(-1).tolist():
        if not kept:
            zeros += 1
            continue
        while zeros > max_run:
            entries.append((max_run, True))
            zeros -= max_run + 1
        entries.append((zeros, False))
        zeros = 0
    return entries  # a trailing zero run emits nothing


def slow_csr_bits(mask: np.ndarray) -> int:
    rows = mask.shape[0]
    table = mask.reshape(rows, -1).tolist() if mask.size else [[] for _ in range(rows)]
    cols = math.prod(mask.shape[1:])
    nnz = sum(sum(1 for v in row if v) for row in table)
    col_bits = max(1, math.ceil(math.log2(cols))) if cols > 1 else 1
    ptr_bits = max(1, math.ceil(math.log2(nnz + 1))) if nnz > 0 else 1
    return nnz * col_bits + (rows + 1) * ptr_bits


def slow_coo_bits(mask: np.ndarray) -> int:
    rows, cols = mask.shape[0], math.prod(mask.shape[1:])
    nnz = sum(1 for v in mask.reshape(-1).tolist() if v)
    width = [math.ceil(math.log2(d)) if d > 1 else 1 for d in (rows, cols)]
    return nnz * sum(width)


def colex_rank(positions: tuple[int, ...], m: int, n: int) -> int:
    """Rank of an N-subset of range(M) in colexicographic order (the combinatorial number
    system), by listing every subset."""
    subsets = sorted(itertools.combinations(range(m), n), key=lambda c: tuple(reversed(c)))
    return subsets.index(positions)


# ---------------------------------------------------------------------------------------------
# round trips


def check_round_trip(mask: np.ndarray, fmt: str, params: IndexParams) -> EncodedIndex:
    enc = encode(mask, fmt, params)
    out = decode(enc)
    assert out.dtype == np.bool_
    assert out.shape == mask.shape
    np.testing.assert_array_equal(out, mask)
    assert enc.bits == index_bits(mask, fmt, params)
    assert enc.shape == mask.shape and enc.fmt == fmt
    return enc


@FAST
@given(masks(), st.integers(1, 5))
def test_round_trip_unstructured(mask: np.ndarray, run_bits: int) -> None:
    params = IndexParams(run_bits=run_bits)
    for fmt in UNSTRUCTURED:
        check_round_trip(mask, fmt, params)


@FAST
@given(nm_masks())
def test_round_trip_nm(case: tuple[np.ndarray, IndexParams]) -> None:
    mask, params = case
    check_round_trip(mask, "nm", params)
    for fmt in UNSTRUCTURED:
        check_round_trip(mask, fmt, params)


@FAST
@given(group_masks())
def test_round_trip_group_bitmap(case: tuple[np.ndarray, IndexParams]) -> None:
    mask, params = case
    enc = check_round_trip(mask, "group_bitmap", params)
    assert enc.bits * math.prod(params.group_shape) == mask.size


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)])
def test_empty_masks(shape: tuple[int, ...]) -> None:
    mask = np.zeros(shape, dtype=bool)
    params = IndexParams(nm=(1, 1), nm_axis=0, group_shape=(1,) * len(shape))
    for fmt in FORMATS:
        check_round_trip(mask, fmt, params)
    # csr: no column indices, rows + 1 pointers of 1 bit (a pointer field is at least 1 bit)
    assert index_bits(mask, "csr") == shape[0] + 1
    assert index_bits(mask, "bitmap") == index_bits(mask, "rle") == index_bits(mask, "coo") == 0


def test_encoded_arrays_are_read_only() -> None:
    enc = encode(np.array([True, False, True]), "csr")
    with pytest.raises(ValueError):
        enc.data[0][0] = 1


def test_decode_rejects_bad_index() -> None:
    params = IndexParams(nm=(2, 4))
    bad = EncodedIndex("nm", (1, 4), params, (np.array([6]), np.zeros((1, 2), dtype=bool)))
    with pytest.raises(ValueError, match="rank outside"):
        decode(bad)
    runs = EncodedIndex("rle", (3,), IndexParams(), (np.array([5]), np.array([False])))
    with pytest.raises(ValueError, match="past the end"):
        decode(runs)
    with pytest.raises(ValueError, match="unknown index format"):
        EncodedIndex("zip", (3,), IndexParams(), ())


# ---------------------------------------------------------------------------------------------
# hand-checked bit counts


def test_bitmap_bits() -> None:
    mask = np.zeros((3, 5), dtype=bool)
    assert index_bits(mask, "bitmap") == 3 * 5  # 1 bit per element, whatever the density


def test_rle_bits_with_fillers() -> None:
    # run_bits = 2: runs 0..3; a filler stands for 3 zeros + 1 zero element = 4 zeros
    mask = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    # gaps: 2 -> [2]; 5 -> filler (4 zeros) + [1]; 0 -> [0]; trailing 2 zeros -> nothing
    params = IndexParams(run_bits=2)
    assert index_bits(mask, "rle", params) == 4 * 2
    enc = encode(mask, "rle", params)
    assert enc.data[0].tolist() == [2, 3, 1, 0]
    assert enc.data[1].tolist() == [False, True, False, False]
    assert decoder_ops(mask, "rle", params) == 4
    assert stored_values(mask, "rle", params) == 4  # 3 kept values + 1 explicit zero


@pytest.mark.parametrize(("gap", "fillers"),
                         [(0, 0), (3, 0), (4, 1), (7, 1), (8, 2), (11, 2), (12, 3), (100, 25)])
def test_rle_filler_count(gap: int, fillers: int) -> None:
    # run_bits = 2: each filler covers 2**2 = 4 zeros, the last <= 3 zeros ride on the kept entry
    mask = np.array([0] * gap + [1] + [0] * 50, dtype=bool)  # 50 trailing zeros cost nothing
    assert index_bits(mask, "rle", IndexParams(run_bits=2)) == (fillers + 1) * 2
    # default run_bits = 4: fillers every 16 zeros
    assert index_bits(mask, "rle") == (gap // 16 + 1) * 4


def test_rle_no_kept_elements_costs_nothing() -> None:
    assert index_bits(np.zeros(1000, dtype=bool), "rle") == 0


def test_csr_and_coo_bits() -> None:
    mask = np.zeros((4, 2, 3), dtype=bool)  # 2D view: rows = 4, cols = 2 * 3 = 6
    mask[0, 0, 0] = mask[0, 1, 2] = mask[2, 0, 1] = mask[3, 1, 1] = mask[3, 1, 2] = True  # nnz 5
    # csr: 5 column indices of ceil(log2 6) = 3 bits + 5 row pointers (values 0..5: 3 bits)
    assert index_bits(mask, "csr") == 5 * 3 + 5 * 3
    # coo: 5 x (ceil(log2 4) = 2 + ceil(log2 6) = 3)
    assert index_bits(mask, "coo") == 5 * (2 + 3)
    assert decoder_ops(mask, "csr") == 5 + 4 + 1
    assert decoder_ops(mask, "coo") == 5


def test_csr_and_coo_one_dimensional() -> None:
    mask = np.zeros(10, dtype=bool)
    mask[[1, 4, 9]] = True  # rows = 10, cols = 1: the column field is still 1 bit wide
    # csr: 3 x 1-bit column + 11 pointers of ceil(log2 4) = 2 bits
    assert index_bits(mask, "csr") == 3 * 1 + 11 * 2
    # coo: 3 x (ceil(log2 10) = 4 + 1)
    assert index_bits(mask, "coo") == 3 * (4 + 1)
    one = np.ones((1, 1), dtype=bool)  # 1 x 1: every field 1 bit
    assert index_bits(one, "coo") == 2
    assert index_bits(one, "csr") == 1 + 2 * 1


def test_nm_bits() -> None:
    mask = np.zeros((2, 8, 1, 1), dtype=bool)  # (Cout, Cin, kh, kw); groups of 4 along Cin
    mask[:, [0, 3, 5, 6]] = True  # 2 kept in each group of 4
    # 2:4 -> ceil(log2 C(4, 2) = 6) = 3 bits per group, 2 x 2 groups
    assert index_bits(mask, "nm", IndexParams(nm=(2, 4))) == 4 * 3
    # 4:8 -> ceil(log2 70) = 7 bits per group, 2 x 1 groups
    assert index_bits(mask, "nm", IndexParams(nm=(4, 8))) == 2 * 7
    # 2:8 cannot hold 4 kept of 8; with 2 kept per 8: ceil(log2 C(8, 2) = 28) = 5 bits per group
    assert index_bits(mask, "nm", IndexParams(nm=(2, 8))) is None
    two_of_eight = mask & (np.arange(8) < 4)[:, None, None]  # keeps Cin 0 and 3
    assert index_bits(two_of_eight, "nm", IndexParams(nm=(2, 8))) == 2 * 5
    # 3:4 holds it too (each group stores one explicit zero): ceil(log2 4) = 2 bits per group
    assert index_bits(mask, "nm", IndexParams(nm=(3, 4))) == 4 * 2
    assert stored_values(mask, "nm", IndexParams(nm=(3, 4))) == 4 * 3
    # 4:4 is dense: C(4, 4) = 1 subset, 0 bits
    assert index_bits(mask, "nm", IndexParams(nm=(4, 4))) == 0
    assert decoder_ops(mask, "nm", IndexParams(nm=(2, 4))) == 4


def test_nm_ranks_are_colex() -> None:
    # one group per row of every 2-subset of range(5), in axis -1
    subsets = list(itertools.combinations(range(5), 2))
    mask = np.zeros((len(subsets), 5), dtype=bool)
    for i, c in enumerate(subsets):
        mask[i, list(c)] = True
    enc = encode(mask, "nm", IndexParams(nm=(2, 5), nm_axis=-1))
    assert enc.data[0].tolist() == [colex_rank(c, 5, 2) for c in subsets]
    assert not enc.data[1].any()


def test_nm_explicit_zeros_pad_lowest_free_positions() -> None:
    mask = np.array([[False, False, True, False]])  # 1 kept of 2:4 -> stores {0, 2}, 0 is a zero
    enc = encode(mask, "nm", IndexParams(nm=(2, 4), nm_axis=1))
    assert enc.data[0].tolist() == [colex_rank((0, 2), 4, 2)]
    assert enc.data[1].tolist() == [[True, False]]


def test_group_bitmap_bits() -> None:
    groups = np.zeros((2, 2, 2, 2), dtype=bool)
    groups[0, 1, 0, 1] = groups[1, 0, 1, 1] = True
    mask = expand_groups(groups, (1, 8, 1, 1))  # (2, 16, 2, 2): 128 elements, 16 groups of 8
    params = IndexParams(group_shape=(1, 8, 1, 1))
    assert index_bits(mask, "group_bitmap", params) == 16
    assert decoder_ops(mask, "group_bitmap", params) == 1 + 2  # ceil(16 / 64) words + 2 kept
    assert stored_values(mask, "group_bitmap", params) == 2 * 8


def test_decoder_ops_bitmap() -> None:
    mask = np.zeros(130, dtype=bool)
    mask[[0, 5, 64, 100, 129]] = True
    assert decoder_ops(mask, "bitmap") == 3 + 5  # ceil(130 / 64) word scans + 5 coordinates


# ---------------------------------------------------------------------------------------------
# the properties accelsim relies on


@FAST
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.integers(0, 2**32 - 1))
def test_scdg_groups_cost_eight_times_fewer_bits(n: int, c8: int, h: int, w: int,
                                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = expand_groups(rng.random((n, c8, h, w)) < 0.5, (1, 8, 1, 1))  # (N, 8*c8, H, W)
    params = IndexParams(group_shape=(1, 8, 1, 1))
    assert index_bits(mask, "group_bitmap", params) * 8 == index_bits(mask, "bitmap")
    assert index_reduction(index_bits(mask, "bitmap"),
                           index_bits(mask, "group_bitmap", params)) == 8.0


@FAST
@given(nm_masks())
def test_nm_bits_per_group(case: tuple[np.ndarray, IndexParams]) -> None:
    mask, params = case
    n, m = params.nm
    assert index_bits(mask, "nm", params) == mask.size // m * math.ceil(math.log2(math.comb(m, n)))


@FAST
@given(nm_masks(), st.booleans())
def test_nm_fit_given_matches_the_scan(case: tuple[np.ndarray, IndexParams], flip: bool) -> None:
    """A caller that has checked the N:M fit passes it (``nm_fit``) and gets what the scan
    gives; best_format passes it on. The fit decides the nm bits, nothing else."""
    mask, params = case
    if flip:  # a mask that breaks the pattern: one group gains a kept element
        mask = mask.copy()
        mask.reshape(-1)[np.flatnonzero(~mask.reshape(-1))[:1]] = True
    fit = nm_fits(mask, *params.nm, axis=params.nm_axis % mask.ndim)
    assert index_bits(mask, "nm", params, nm_fit=fit) == index_bits(mask, "nm", params)
    assert best_format(mask, FORMATS, params, nm_fit=fit) == best_format(mask, FORMATS, params)
    if fit:
        assert index_bits(mask, "nm", params, nm_fit=False) is None
    nnz = int(np.count_nonzero(mask))  # a caller that has counted the kept elements
    assert best_format(mask, FORMATS, params, nm_fit=fit, nnz=nnz) == best_format(mask, FORMATS,
                                                                                  params)
    for fmt in ("csr", "coo"):
        assert index_bits(mask, fmt, params, nnz=nnz) == index_bits(mask, fmt, params)


def test_nm_two_four_costs_three_bits_per_group() -> None:
    rng = np.random.default_rng(0)
    rows = rng.random((6 * 8 * 3 * 3, 4)).argsort(axis=1) < 2  # exactly 2 of each 4
    mask = np.moveaxis(rows.reshape(6, 3, 3, 8, 4), (3, 4), (1, 2)).reshape(6, 32, 3, 3)
    assert index_bits(mask, "nm", IndexParams(nm=(2, 4))) == mask.size // 4 * 3


# ---------------------------------------------------------------------------------------------
# differential tests against the slow references


@FAST
@given(masks(max_side=9), st.integers(1, 4), st.integers(0, 7))
def test_rle_matches_slow_encoder(mask: np.ndarray, run_bits: int, offset: int) -> None:
    """The rle bits (numba kernel: 8-byte words, then the tail) and encoding against an encoder
    that walks the mask; ``offset`` shifts the mask off 8-byte alignment."""
    params = IndexParams(run_bits=run_bits)
    expected = slow_rle(mask, run_bits)
    buffer = np.zeros(mask.size + offset, dtype=bool)
    buffer[offset:] = mask.reshape(-1)
    shifted = buffer[offset:].reshape(mask.shape)
    assert index_bits(shifted, "rle", params) == len(expected) * run_bits
    assert decoder_ops(shifted, "rle", params) == len(expected)
    enc = encode(mask, "rle", params)
    assert list(zip(enc.data[0].tolist(), enc.data[1].tolist(), strict=True)) == expected


@FAST
@given(masks(max_side=9))
def test_csr_coo_match_slow_reference(mask: np.ndarray) -> None:
    assert index_bits(mask, "csr") == slow_csr_bits(mask)
    assert index_bits(mask, "coo") == slow_coo_bits(mask)


@FAST
@given(masks())
def test_expand_groups_is_repeat(groups: np.ndarray) -> None:
    group_shape = tuple(range(1, groups.ndim + 1))
    expected = groups
    for axis, g in enumerate(group_shape):
        expected = np.repeat(expected, g, axis=axis)
    out = expand_groups(groups, group_shape)
    np.testing.assert_array_equal(out, expected)
    assert out.flags.writeable and not np.shares_memory(out, groups)


# ---------------------------------------------------------------------------------------------
# not representable, validation


def test_nm_not_representable() -> None:
    mask = np.zeros((2, 8), dtype=bool)
    mask[0, :3] = True  # 3 kept in the first group of 4
    assert index_bits(mask, "nm", IndexParams(nm=(2, 4))) is None
    assert index_bits(mask, "nm", IndexParams(nm=(3, 4))) == 2 * 2 * 2
    assert index_bits(mask, "nm", IndexParams(nm=(2, 3))) is None  # 3 does not divide 8
    assert index_bits(mask, "nm") is None  # no (N, M) given
    with pytest.raises(ValueError, match="cannot represent"):
        encode(mask, "nm", IndexParams(nm=(2, 4)))
    with pytest.raises(ValueError, match="cannot represent"):
        encode(mask, "nm")
    with pytest.raises(ValueError, match="cannot represent"):
        decoder_ops(mask, "nm", IndexParams(nm=(2, 4)))


def test_group_bitmap_not_representable() -> None:
    mask = np.zeros((2, 8), dtype=bool)
    mask[0, :4] = True
    assert index_bits(mask, "group_bitmap", IndexParams(group_shape=(1, 4))) == 4
    assert index_bits(mask, "group_bitmap", IndexParams(group_shape=(1, 8))) is None  # mixed
    assert index_bits(mask, "group_bitmap", IndexParams(group_shape=(1, 3))) is None  # no tiling
    assert index_bits(mask, "group_bitmap") is None  # no group_shape given
    with pytest.raises(ValueError, match="cannot represent"):
        encode(mask, "group_bitmap", IndexParams(group_shape=(1, 8)))
    with pytest.raises(ValueError, match="cannot represent"):
        decoder_ops(mask, "group_bitmap", IndexParams(group_shape=(1, 3)))
    with pytest.raises(ValueError, match="cannot represent"):
        encode(mask, "group_bitmap")


def test_all_index_bits_and_best_format() -> None:
    mask = expand_groups(np.array([[True, False], [False, False]]), (1, 4))  # (2, 8)
    params = IndexParams(nm=(4, 4), group_shape=(1, 4))
    bits = all_index_bits(mask, params)
    assert list(bits) == list(FORMATS)
    assert bits == {fmt: index_bits(mask, fmt, params) for fmt in FORMATS}
    # nm 4:4 is dense and needs 0 bits; group_bitmap 4 bits; bitmap 16 bits
    assert best_format(mask, FORMATS, params) == ("nm", 0)
    assert best_format(mask, ("bitmap", "group_bitmap"), params) == ("group_bitmap", 4)
    # ties keep the order given: 4 elements in 1D, 1 kept -> bitmap 4 bits, rle 1 x 4 bits
    tie = np.array([True, False, False, False])
    assert best_format(tie, ("rle", "bitmap")) == ("rle", 4)
    assert best_format(tie, ("bitmap", "rle")) == ("bitmap", 4)
    with pytest.raises(ValueError, match="none of the formats"):
        best_format(mask, ("nm",), IndexParams(nm=(1, 4)))
    with pytest.raises(ValueError, match="at least one"):
        best_format(mask, ())


def test_validation_errors() -> None:
    mask = np.ones((2, 4), dtype=bool)
    with pytest.raises(ValueError, match="bitmap, rle, csr, coo, nm, group_bitmap"):
        index_bits(mask, "ell")
    with pytest.raises(ValueError, match="rank"):
        index_bits(mask, "group_bitmap", IndexParams(group_shape=(1, 2, 2)))
    with pytest.raises(ValueError, match="out of range"):
        index_bits(mask, "nm", IndexParams(nm=(2, 4), nm_axis=2))
    with pytest.raises(ValueError, match="N <= M"):
        IndexParams(nm=(5, 4))
    with pytest.raises(ValueError, match="run_bits"):
        IndexParams(run_bits=0)
    with pytest.raises(ValueError, match="group_shape"):
        IndexParams(group_shape=(1, 0))
    with pytest.raises(ValueError, match="M <= 64"):
        IndexParams(nm=(2, 65))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        index_bits(np.array([0, 1, 2]), "bitmap")
    with pytest.raises(ValueError, match="dtype"):
        index_bits(np.array(["a", "b"]), "bitmap")
    with pytest.raises(ValueError, match="at least one dimension"):
        index_bits(np.array(True), "bitmap")
    with pytest.raises(ValueError, match="rank"):
        expand_groups(mask, (2,))
    with pytest.raises(InputError):  # the CLI maps it to exit 2
        index_bits(mask, "ell")


def test_zero_one_numbers_are_converted() -> None:
    ints = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
    bools = ints.astype(bool)
    params = IndexParams(nm=(2, 4))
    for fmt in ("bitmap", "rle", "csr", "coo", "nm"):
        assert index_bits(ints, fmt, params) == index_bits(bools, fmt, params)
        np.testing.assert_array_equal(decode(encode(ints.astype(float), fmt, params)), bools)


def test_index_reduction() -> None:
    assert index_reduction(16, 2) == 8.0
    assert index_reduction(16, 0) == math.inf
    assert index_reduction(0, 0) == 1.0
    with pytest.raises(ValueError):
        index_reduction(-1, 2)
