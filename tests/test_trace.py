"""Tests of the trace contract (accelsim.trace): round trips, atomicity, corruption, versions."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accelsim.trace.writer as writer_module
from accelsim.errors import InputError
from accelsim.network import conv, linear
from accelsim.trace import (
    FORMAT_VERSION,
    TraceError,
    TraceLayer,
    TraceReader,
    TraceWriter,
    gate_spec_for,
    open_trace,
    select_spec_for,
    weight_spec_for,
)
from accelsim.trace.format import pack_mask, unpack_mask

Masks = dict[tuple[str, int], np.ndarray]


def small_layers() -> list[TraceLayer]:
    """A CDG stem, an SCDG block conv (groups of 4 channels), a grouped conv with gates only and a
    linear head with weight masks only."""
    stem = conv("conv1", 3, 8, 3, 1, 1, 6, 6, 2, role="stem")
    block = conv("layer1.0.conv1", 8, 8, 3, 2, 1, 6, 6, 2, role="block")
    grouped = conv("layer1.0.conv2", 8, 8, 3, 1, 1, 3, 3, 2, groups=4, role="block")
    head = linear("head.0", 8, 4, 2)
    return [
        TraceLayer(stem, gate_spec_for(stem), weight_spec_for(stem)),
        TraceLayer(block, gate_spec_for(block, 4), weight_spec_for(block, "nm:2:4")),
        TraceLayer(grouped, gate_spec_for(grouped, 2), None),
        TraceLayer(head, None, weight_spec_for(head, "block:2x4")),
    ]


def random_gates(layers: list[TraceLayer], rng: np.random.Generator, density: float = 0.4,
                 branches: int = 2) -> Masks:
    return {(t.name, b): rng.random(t.gate.shape) < density
            for t in layers if t.gate is not None for b in range(1, branches + 1)}


def random_weights(layers: list[TraceLayer], rng: np.random.Generator, density: float = 0.5,
                   branches: int = 2) -> Masks:
    return {(t.name, b): rng.random(t.weight.shape) < density
            for t in layers if t.weight is not None for b in range(1, branches + 1)}


def write_small_trace(path: Path, seed: int = 0) -> dict[int, tuple[Masks, Masks]]:
    """Steps 0, 3, 7: weights stored at 0, unchanged (None) at 3, at 7 one layer changes and the
    others are passed again unchanged (stored as references by the writer).
    Returns the expected (gates, weights) per step."""
    rng = np.random.default_rng(seed)
    layers = small_layers()
    expected: dict[int, tuple[Masks, Masks]] = {}
    with TraceWriter.create(path, {"algorithm": "cdg", "ssl": "simclr", "seed": seed},
                            layers, min_saving=0) as writer:  # every mask deflated
        weights = random_weights(layers, rng)
        gates = random_gates(layers, rng)
        writer.write_step(0, gates, weights, {"loss": 2.5, "lr": 0.1})
        expected[0] = (gates, dict(weights))
        gates = random_gates(layers, rng)
        writer.write_step(3, gates, {key: None for key in weights}, {"loss": 2.0})
        expected[3] = (gates, dict(weights))
        weights[("conv1", 2)] = rng.random(weights[("conv1", 2)].shape) < 0.3
        gates = random_gates(layers, rng)
        writer.write_step(7, gates, {key: mask.copy() for key, mask in weights.items()})
        expected[7] = (gates, dict(weights))
    return expected


def step_json(trace: Path, step: int) -> Path:
    return trace / "steps" / f"step-{step:08d}.json"


def step_bin(trace: Path, step: int) -> Path:
    return trace / "steps" / f"step-{step:08d}.bin"


def edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def mask_name(step: int, layer: str, branch: int, kind: str) -> str:
    return f"step {step}, layer '{layer}', branch {branch}, {kind} mask"


@pytest.fixture()
def trace(tmp_path: Path) -> tuple[Path, dict[int, tuple[Masks, Masks]]]:
    path = tmp_path / "trace"
    return path, write_small_trace(path)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def test_round_trip(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, expected = trace
    reader = open_trace(path)
    assert reader.steps == [0, 3, 7]
    assert reader.branches == 2
    assert [t.name for t in reader.layers] == [t.name for t in small_layers()]
    assert reader.manifest.layers == tuple(small_layers())
    assert reader.manifest.producer == {"algorithm": "cdg", "ssl": "simclr", "seed": 0}
    assert reader.manifest.version == FORMAT_VERSION
    for step, (gates, weights) in expected.items():
        for (layer, branch), mask in gates.items():
            got = reader.gate(step, layer, branch)
            assert got.dtype == np.bool_ and not got.flags.writeable
            np.testing.assert_array_equal(got, mask)
        for (layer, branch), mask in weights.items():
            np.testing.assert_array_equal(reader.weight(step, layer, branch), mask)
    assert reader.weight(0, "layer1.0.conv2", 1) is None  # no weight spec
    seen = []
    for masks in reader.iter_steps():
        gates, weights = expected[masks.step]
        assert masks.gates.keys() == gates.keys() and masks.weights.keys() == weights.keys()
        for key in gates:
            np.testing.assert_array_equal(masks.gates[key], gates[key])
        for key in weights:
            np.testing.assert_array_equal(masks.weights[key], weights[key])
        seen.append(masks.step)
    assert seen == [0, 3, 7]
    reader.verify()


def test_unchanged_weights_are_references(trace: tuple[Path, Masks]) -> None:
    path, _ = trace
    entries = {step: {(e["layer"], e["branch"], e["kind"]): e
                      for e in json.loads(step_json(path, step).read_text())["masks"]}
               for step in (0, 3, 7)}
    weight_keys = [k for k in entries[0] if k[2] == "weight"]
    assert all("ref_step" not in entries[0][k] for k in weight_keys)
    assert all(entries[3][k] == {"layer": k[0], "branch": k[1], "kind": "weight", "ref_step": 0}
               for k in weight_keys)
    # step 7: conv1 branch 2 changed and is stored; the rest equal step 0 and point straight to
    # it (chains resolved at write time), never to step 3
    for key in weight_keys:
        if key[:2] == ("conv1", 2):
            assert "ref_step" not in entries[7][key]
        else:
            assert entries[7][key]["ref_step"] == 0
    reader = open_trace(path)
    assert reader.weight_step(7, "conv1", 2) == 7
    assert reader.weight_step(7, "conv1", 1) == 0
    assert reader.weight_step(3, "head.0", 2) == 0
    masks = list(reader.iter_steps())
    assert masks[2].weights[("conv1", 1)] is masks[0].weights[("conv1", 1)]  # decoded once


def test_stats_and_summary(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, expected = trace
    reader = open_trace(path)
    stats = reader.stats(0)
    assert stats["loss"] == 2.5 and stats["lr"] == 0.1
    assert reader.stats(7)["loss"] is None
    assert set(stats["density"]) == {t.name for t in small_layers()}
    assert "weight" not in stats["density"]["layer1.0.conv2"]
    assert "gate" not in stats["density"]["head.0"]
    for step, (gates, weights) in expected.items():
        density = reader.stats(step)["density"]
        for (layer, branch), mask in gates.items():
            assert density[layer]["gate"][str(branch)] == pytest.approx(mask.mean())
        for (layer, branch), mask in weights.items():
            assert density[layer]["weight"][str(branch)] == pytest.approx(mask.mean())
    summary = reader.summary()
    assert summary["steps"] == 3 and summary["first_step"] == 0 and summary["last_step"] == 7
    assert summary["loss_mean"] == pytest.approx(2.25)
    mean = np.mean([expected[s][0][("conv1", 2)].mean() for s in expected])
    assert summary["density"]["conv1"]["gate"]["2"] == pytest.approx(mean)


def test_stats_readable_without_bin_files(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    for step in (0, 3, 7):
        step_bin(path, step).unlink()
    reader = open_trace(path)
    assert reader.steps == [0, 3, 7]
    assert reader.stats(3)["loss"] == 2.0
    assert reader.summary()["steps"] == 3
    with pytest.raises(TraceError, match="missing mask data file"):
        reader.gate(0, "conv1", 1)


dims = st.integers(min_value=1, max_value=6)


@st.composite
def layer_and_densities(draw: st.DrawFn) -> tuple[TraceLayer, list[float], bool, int]:
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 4))
    k = draw(st.sampled_from([1, 3]))
    padding = draw(st.integers(0, 1))
    h_in = draw(st.integers(max(1, k - 2 * padding), 7))
    layer = conv("l", cin, cout, k, draw(st.integers(1, 2)), padding, h_in,
                 draw(st.integers(max(1, k - 2 * padding), 7)), draw(st.integers(1, 3)),
                 groups=groups)
    group_size = draw(st.sampled_from([s for s in range(1, cout + 1) if cout % s == 0]))
    has_weight = draw(st.booleans())
    item = TraceLayer(layer, gate_spec_for(layer, group_size),
                      weight_spec_for(layer) if has_weight else None)
    densities = draw(st.lists(st.sampled_from([0.0, 1.0, 0.03, 0.5, 0.97]), min_size=1,
                              max_size=3))
    return item, densities, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=layer_and_densities(), level=st.sampled_from([0, 1, 6, 9]),
       min_saving=st.sampled_from([0.0, 0.1, 0.25, 1.0]))
def test_round_trip_property(case: tuple[TraceLayer, list[float], bool, int], level: int,
                             min_saving: float) -> None:
    item, densities, change_weights, seed = case
    rng = np.random.default_rng(seed)
    written: list[tuple[Masks, Masks]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t"
        writer = TraceWriter.create(path, {"seed": seed}, [item], compression_level=level,
                                    min_saving=min_saving)
        weights: Masks = random_weights([item], rng)
        for step, density in enumerate(densities):
            gates = random_gates([item], rng, density)
            if change_weights or step == 0:
                weights = random_weights([item], rng, density)
            writer.write_step(step * 2, gates, weights, {"loss": density})
            written.append((gates, weights))
        reader = TraceReader(path)
        assert reader.steps == [2 * i for i in range(len(densities))]
        for masks, (gates, weights) in zip(reader.iter_steps(), written, strict=True):
            for key in gates:
                np.testing.assert_array_equal(masks.gates[key], gates[key])
                assert reader.stats(masks.step)["density"]["l"]["gate"][str(key[1])] == \
                    pytest.approx(gates[key].mean())
            for key in weights:
                np.testing.assert_array_equal(masks.weights[key], weights[key])
                np.testing.assert_array_equal(reader.weight(masks.step, *key), weights[key])
            packed = reader.step_packed(masks.step)
            for key in gates:
                assert packed.gates[key].ones == int(gates[key].sum())
                np.testing.assert_array_equal(packed.gates[key].unpack(), gates[key])


def test_uint8_masks_and_numpy_integers_are_accepted(tmp_path: Path) -> None:
    layers = small_layers()
    rng = np.random.default_rng(1)
    gates = random_gates(layers, rng)
    weights = random_weights(layers, rng)
    with TraceWriter.create(tmp_path / "t", {}, layers) as writer:
        writer.write_step(np.int64(4), {(k[0], np.int64(k[1])): v.astype(np.uint8)
                                        for k, v in gates.items()},
                          {k: v.astype(np.uint8) for k, v in weights.items()})
    reader = open_trace(tmp_path / "t")
    assert reader.steps == [4]
    np.testing.assert_array_equal(reader.gate(4, "conv1", 2), gates[("conv1", 2)])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 9))
def test_fast_crc32_and_inflate_equal_zlib(data: bytes, level: int) -> None:
    """The reader's ISA-L crc32 and inflate give zlib's results bit for bit (the format is
    zlib's)."""
    import zlib

    from accelsim.trace.format import crc32, zlib_fast
    assert crc32(np.frombuffer(data, dtype=np.uint8)) == zlib.crc32(data)
    stream = zlib_fast.decompressobj()
    assert stream.decompress(zlib.compress(data, level), len(data) + 1) == data
    assert stream.eof and not stream.unused_data


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 7), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_packed_ones_counts_the_mask_bits_only(count: int, offset: int, density: float,
                                               seed: int) -> None:
    """Ones among the first ``count`` packed bits (padding ignored), on unaligned buffers too:
    numpy's count (the reader's default) and the numba kernel the replay gives the reader."""
    from accelsim.kernels import popcount_words
    from accelsim.trace.format import packed_ones
    bits = np.random.default_rng(seed).random(count) < density
    packed = np.packbits(bits, bitorder="little")
    padded = np.full(packed.size + 1 + offset, 0xFF, dtype=np.uint8)  # set padding bits
    padded[offset:offset + packed.size] = packed
    if count % 8:
        padded[offset + packed.size - 1] |= np.uint8(0xFF << (count % 8) & 0xFF)
    assert packed_ones(padded[offset:offset + packed.size], count) == int(bits.sum())
    assert packed_ones(padded[offset:offset + packed.size], count, popcount_words) == int(
        bits.sum())


def test_bit_order_is_little_endian_c_order() -> None:
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, 0] = True  # element 0 -> byte 0, bit 0
    mask[1, 4] = True  # element 9 -> byte 1, bit 1
    assert pack_mask(mask) == bytes([0x01, 0x02])
    np.testing.assert_array_equal(unpack_mask(bytes([0x01, 0x02]), (2, 5)), mask)
    fortran = np.asfortranarray(mask)
    assert pack_mask(fortran) == pack_mask(mask)


def test_scdg_gate_spec() -> None:
    layer = conv("c", 4, 12, 3, 2, 1, 8, 8, 5)
    spec = gate_spec_for(layer, 4)
    assert spec.group_size == 4 and spec.shape == (5, 3, 4, 4)
    assert gate_spec_for(layer).shape == (5, 12, 4, 4)
    with pytest.raises(TraceError, match="divisor of cout=12"):
        gate_spec_for(layer, 5)
    assert weight_spec_for(layer, "nm:2:4").shape == (12, 4, 3, 3)
    with pytest.raises(TraceError, match="nm:N:M"):
        weight_spec_for(layer, "nm:5:4")


# ---------------------------------------------------------------------------------------------
# Atomicity and resume
# ---------------------------------------------------------------------------------------------


def test_crash_leaves_only_complete_steps_and_resume_continues(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t"
    layers = small_layers()
    rng = np.random.default_rng(2)
    weights = random_weights(layers, rng)
    writer = TraceWriter.create(path, {"seed": 2}, layers)
    writer.write_step(0, random_gates(layers, rng), weights)
    writer.write_step(1, random_gates(layers, rng), {k: None for k in weights})

    real_write = writer_module.atomic_write_bytes

    def crash_on_commit(target: Path, data: bytes) -> None:
        if target.suffix == ".json":
            (target.parent / f"{target.name}.4242.tmp").write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt  # killed before the commit marker is in place
        real_write(target, data)

    monkeypatch.setattr(writer_module, "atomic_write_bytes", crash_on_commit)
    with pytest.raises(KeyboardInterrupt):
        writer.write_step(2, random_gates(layers, rng), random_weights(layers, rng))
    monkeypatch.undo()
    assert step_bin(path, 2).exists() and not step_json(path, 2).exists()
    assert writer.last_step == 1

    reader = open_trace(path)
    assert reader.steps == [0, 1]
    reader.verify()

    resumed = TraceWriter.resume(path)
    assert resumed.last_step == 1
    assert not step_bin(path, 2).exists()
    assert not list(path.rglob("*.tmp"))
    with pytest.raises(TraceError, match="greater than the last written step 1"):
        resumed.write_step(1, random_gates(layers, rng), weights)
    gates = random_gates(layers, rng)
    same = {k: v.copy() for k, v in weights.items()}
    same[("head.0", 1)] = ~weights[("head.0", 1)]
    resumed.write_step(2, gates, same)  # equal masks become references across the resume
    resumed.write_step(3, random_gates(layers, rng), {k: None for k in weights})
    entries = {(e["layer"], e["branch"], e["kind"]): e
               for e in json.loads(step_json(path, 2).read_text())["masks"]}
    assert entries[("conv1", 1, "weight")]["ref_step"] == 0
    assert "ref_step" not in entries[("head.0", 1, "weight")]
    reader = open_trace(path)
    assert reader.steps == [0, 1, 2, 3]
    reader.verify()
    np.testing.assert_array_equal(reader.gate(2, "conv1", 1), gates[("conv1", 1)])
    np.testing.assert_array_equal(reader.weight(3, "head.0", 1), same[("head.0", 1)])
    assert reader.weight_step(3, "head.0", 1) == 2
    assert reader.weight_step(3, "head.0", 2) == 0


def test_temporary_and_incomplete_files_are_ignored(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    step_bin(path, 9).write_bytes(b"partial")
    (path / "steps" / "step-00000009.json.77.tmp").write_text("{")
    (path / "manifest.json.77.tmp").write_text("{")
    reader = open_trace(path)
    assert reader.steps == [0, 3, 7]
    reader.verify()


# ---------------------------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------------------------


def data_entries(path: Path, step: int) -> list[dict]:  # type: ignore[type-arg]
    masks = json.loads(step_json(path, step).read_text())["masks"]
    return [e for e in masks if "ref_step" not in e]


def test_truncated_bin_is_detected(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, expected = trace
    entries = data_entries(path, 3)
    last = entries[-1]
    blob = step_bin(path, 3).read_bytes()
    step_bin(path, 3).write_bytes(blob[: last["offset"] + last["length"] // 2])
    reader = open_trace(path)
    name = mask_name(3, last["layer"], last["branch"], last["kind"])
    with pytest.raises(TraceError, match="truncated mask data") as error:
        reader.verify()
    assert name in str(error.value)
    with pytest.raises(TraceError, match="truncated mask data"):
        reader.gate(3, last["layer"], last["branch"])
    first = entries[0]  # before the cut: still readable on its own
    np.testing.assert_array_equal(reader.gate(3, first["layer"], first["branch"]),
                                  expected[3][0][(first["layer"], first["branch"])])


def test_every_single_bit_flip_is_detected_or_harmless(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    """Flip one bit at every byte of every payload of step 7: reading that mask (and verify())
    fails naming the right step, layer, branch and kind, or, where the bit is deflate padding
    that no decoder reads, the mask comes back unchanged."""
    path, expected = trace
    gates, weights = expected[7]
    original = step_bin(path, 7).read_bytes()
    detected = harmless = 0
    for entry in data_entries(path, 7):
        key = (entry["layer"], entry["branch"])
        name = mask_name(7, entry["layer"], entry["branch"], entry["kind"])
        truth = gates[key] if entry["kind"] == "gate" else weights[key]
        for position in range(entry["offset"], entry["offset"] + entry["length"]):
            flipped = bytearray(original)
            flipped[position] ^= 1 << (position % 8)
            step_bin(path, 7).write_bytes(bytes(flipped))
            reader = TraceReader(path)
            read = reader.gate if entry["kind"] == "gate" else reader.weight
            try:
                mask = read(7, *key)
            except TraceError as error:
                assert name in str(error) and "corrupt mask" in str(error), str(error)
                with pytest.raises(TraceError) as verify_error:
                    TraceReader(path).verify()
                assert name in str(verify_error.value)
                detected += 1
            else:
                np.testing.assert_array_equal(mask, truth)
                harmless += 1
    step_bin(path, 7).write_bytes(original)
    assert detected > 20 * max(harmless, 1)
    open_trace(path).verify()


def test_uncompressed_masks_are_stored_as_packed_bits(tmp_path: Path) -> None:
    """compression_level 0 stores codec "none" (format 1.1); its corruptions are caught too."""
    layers = small_layers()
    rng = np.random.default_rng(3)
    gates = random_gates(layers, rng)
    with TraceWriter.create(tmp_path / "t", {}, layers, compression_level=0) as writer:
        writer.write_step(0, gates, random_weights(layers, rng))
    path = tmp_path / "t"
    entries = data_entries(path, 0)
    assert {e["codec"] for e in entries} == {"none"}
    assert all(e["length"] == e["packed_bytes"] for e in entries)
    key = ("conv1", 1)
    np.testing.assert_array_equal(TraceReader(path).gate(0, *key), gates[key])
    blob = bytearray(step_bin(path, 0).read_bytes())
    blob[entries[0]["offset"]] ^= 1
    step_bin(path, 0).write_bytes(bytes(blob))
    packed = TraceReader(path).step_packed(0)  # gates are checked when looked up
    with pytest.raises(TraceError, match="crc32 mismatch"):
        [packed.gates[k] for k in packed.gates]
    edit_json(step_json(path, 0), lambda d: d["masks"][0].update(length=1))
    with pytest.raises(TraceError, match="length 1 differs from packed_bytes"):
        TraceReader(path).gate(0, *key)


def test_masks_zlib_saves_little_on_are_stored_raw(tmp_path: Path) -> None:
    """min_saving: a mask is deflated only when zlib saves at least that share of its packed
    bytes (random gates save ~10 %: raw, read without inflating); 0 deflates every mask; values
    outside [0, 1] are refused naming the field."""
    layers = small_layers()
    rng = np.random.default_rng(5)
    gates = random_gates(layers, rng, density=0.5)
    weights = {key: np.zeros_like(mask) for key, mask in random_weights(layers, rng).items()}
    codecs = {}
    for min_saving in (0.0, 0.25, 1.0):
        path = tmp_path / f"t{min_saving}"
        with TraceWriter.create(path, {}, layers, compression_level=6,
                                min_saving=min_saving) as writer:
            writer.write_step(0, gates, weights)
        codecs[min_saving] = {(e["kind"], e["layer"], e["codec"]) for e in data_entries(path, 0)}
        for key, gate in gates.items():
            np.testing.assert_array_equal(TraceReader(path).gate(0, *key), gate)
    assert {codec for *_, codec in codecs[0.0]} == {"zlib"}
    assert {codec for *_, codec in codecs[1.0]} == {"none"}
    # all-zero conv weights deflate to a fraction; the head's 4 bytes cannot lose 25 %
    assert codecs[0.25] == {("gate", "conv1", "none"), ("gate", "layer1.0.conv1", "none"),
                            ("gate", "layer1.0.conv2", "none"), ("weight", "conv1", "zlib"),
                            ("weight", "layer1.0.conv1", "zlib"), ("weight", "head.0", "none")}
    for bad in (-0.1, 1.5, True):
        with pytest.raises(TraceError, match=r"min_saving must be a number in \[0, 1\]"):
            TraceWriter.create(tmp_path / "bad", {}, layers, min_saving=bad)


def test_crc_mismatch(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(step_json(path, 0), lambda d: d["masks"][1].update(crc32=d["masks"][1]["crc32"] ^ 1))
    with pytest.raises(TraceError) as error:
        open_trace(path).verify()
    assert str(error.value) == (f"trace {path}: {mask_name(0, 'conv1', 2, 'gate')}: crc32 "
                                f"mismatch (corrupt mask)")


def test_shape_mismatch(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(step_json(path, 3), lambda d: d["masks"][0].update(shape=[2, 8, 6, 5]))
    reader = open_trace(path)
    assert reader.stats(3)["loss"] == 2.0  # statistics do not depend on the mask entries
    with pytest.raises(TraceError) as error:
        reader.gate(3, "conv1", 1)
    assert str(error.value) == (f"trace {path}: {mask_name(3, 'conv1', 1, 'gate')}: shape "
                                f"mismatch with the manifest: got [2, 8, 6, 5], manifest says "
                                f"[2, 8, 6, 6]")


def test_missing_layer(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace

    def drop(data: dict) -> None:  # type: ignore[type-arg]
        data["masks"] = [e for e in data["masks"]
                         if (e["layer"], e["branch"], e["kind"]) != ("layer1.0.conv2", 2, "gate")]

    edit_json(step_json(path, 7), drop)
    with pytest.raises(TraceError, match="missing layer") as error:
        open_trace(path).verify()
    assert mask_name(7, "layer1.0.conv2", 2, "gate") in str(error.value)


def test_unknown_layer_in_step(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(step_json(path, 0), lambda d: d["masks"][0].update(layer="fc9"))
    with pytest.raises(TraceError, match="step 0, masks\\[0\\]: unknown layer 'fc9'"):
        open_trace(path).verify()


def test_ref_to_missing_step(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    step_json(path, 0).unlink()  # step 0 holds the weights that steps 3 and 7 refer to
    reader = open_trace(path)
    assert reader.steps == [3, 7]
    with pytest.raises(TraceError, match="ref_step 0 points to a step that is not in") as e:
        reader.weight(3, "conv1", 1)
    assert mask_name(3, "conv1", 1, "weight") in str(e.value)


def test_ref_to_a_reference_is_refused(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace

    def point_to_step_3(data: dict) -> None:  # type: ignore[type-arg]
        for entry in data["masks"]:
            if entry.get("ref_step") == 0:
                entry["ref_step"] = 3

    edit_json(step_json(path, 7), point_to_step_3)
    with pytest.raises(TraceError, match="holds a reference"):
        open_trace(path).weight(7, "conv1", 1)


# ---------------------------------------------------------------------------------------------
# Manifest and versions
# ---------------------------------------------------------------------------------------------


def test_version_refusal(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(path / "manifest.json", lambda d: d.update(version="2.0"))
    with pytest.raises(TraceError) as error:
        open_trace(path)
    assert str(error.value) == (f"trace {path}: format version 2.0 is not supported by this "
                                f"accelsim (reads 1.x)")
    assert isinstance(error.value, InputError)
    with pytest.raises(TraceError, match=r"format version 2\.0"):
        TraceWriter.resume(path)


def test_newer_minor_version_with_new_fields_is_read(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, expected = trace
    edit_json(path / "manifest.json", lambda d: d.update(version="1.9", future={"x": 1}))
    edit_json(step_json(path, 0), lambda d: d["masks"][0].update(future=True))
    reader = open_trace(path)
    np.testing.assert_array_equal(reader.gate(0, "conv1", 1), expected[0][0][("conv1", 1)])
    with pytest.raises(TraceError, match=r"cannot append to a trace of format version 1\.9"):
        TraceWriter.resume(path)


def test_input_selections_round_trip_and_are_checked(tmp_path: Path) -> None:
    """Format 1.5's DGC selections: one (N, heads, Cin) mask per branch and step, stored and
    checked like a gate, never a reference; a layer has a gate or a selection, not both."""
    layer = conv("layer1.0.conv1", 6, 8, 3, 1, 1, 4, 4, 3, role="block")
    spec = TraceLayer(layer, None, weight_spec_for(layer), select_spec_for(layer, 2))
    assert spec.select.shape == (3, 2, 6)
    rng = np.random.default_rng(0)
    chosen = {step: {(layer.name, b): rng.random((3, 2, 6)) < 0.5 for b in (1, 2)}
              for step in (0, 1)}
    weights = {(layer.name, b): np.ones(spec.weight.shape, bool) for b in (1, 2)}
    with TraceWriter.create(tmp_path / "t", {"algorithm": "dgc"}, [spec]) as writer:
        writer.write_step(0, {}, weights, selects=chosen[0])
        writer.write_step(1, {}, {key: None for key in weights}, selects=chosen[1])
        with pytest.raises(TraceError, match="every branch of this layer needs a select"):
            writer.write_step(2, {}, {key: None for key in weights})
        with pytest.raises(TraceError, match="a select mask cannot be None"):
            writer.write_step(2, {}, {key: None for key in weights},
                              selects={key: None for key in weights})
    reader = open_trace(tmp_path / "t")
    assert reader.manifest.version == FORMAT_VERSION == "1.5"
    assert reader.layers[0].select == spec.select
    for step in (0, 1):
        for key, mask in chosen[step].items():
            np.testing.assert_array_equal(reader.step_masks(step).selects[key], mask)
            np.testing.assert_array_equal(reader.step_packed(step).selects[key], mask)
    density = reader.stats(1)["density"][layer.name]["select"]
    assert density["2"] == chosen[1][(layer.name, 2)].mean()
    reader.verify()
    payload = tmp_path / "t" / "steps" / "step-00000001.bin"
    data = bytearray(payload.read_bytes())
    data[0] ^= 1  # step 1's weights are references: its first payload is branch 1's selection
    payload.write_bytes(bytes(data))
    with pytest.raises(TraceError, match=r"select mask: .*corrupt"):
        open_trace(tmp_path / "t").step_masks(1)
    with pytest.raises(TraceError, match="a gate or an input selection, not both"):
        TraceLayer(layer, gate_spec_for(layer), None, select_spec_for(layer, 2))
    with pytest.raises(TraceError, match="heads 3 must divide cout=8"):
        TraceLayer(layer, None, None, select_spec_for(layer, 3))
    grouped = conv("g", 6, 6, 3, 1, 1, 4, 4, 3, groups=2)
    with pytest.raises(TraceError, match="needs groups=1"):
        TraceLayer(grouped, None, None, select_spec_for(grouped, 2))


def test_a_recording_of_format_1_3_resumes(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    """1.4 added only a post-op value: a 1.3 run (a long paper recording, say) still appends,
    and its manifest keeps saying 1.3."""
    path, expected = trace
    edit_json(path / "manifest.json", lambda d: d.update(version="1.3"))
    writer = TraceWriter.resume(path)
    gates, weights = expected[7]
    writer.write_step(9, gates, weights)
    writer.close()
    reader = open_trace(path)
    assert reader.manifest.version == "1.3" and reader.steps == [0, 3, 7, 9]
    reader.verify()
    edit_json(path / "manifest.json", lambda d: d.update(version="1.2"))
    with pytest.raises(TraceError, match=r"cannot append to a trace of format version 1\.2"):
        TraceWriter.resume(path)


def test_unknown_field_in_current_version_is_an_error(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(path / "manifest.json", lambda d: d["layers"][1].update(kernel=3))
    with pytest.raises(TraceError, match=r"manifest.json: layers\[1\].kernel: unknown field"):
        open_trace(path)


def test_wrong_format(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    edit_json(path / "manifest.json", lambda d: d.update(format="zigzag-workload"))
    with pytest.raises(TraceError, match="format: expected 'accelsim-trace'"):
        open_trace(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("branches"), "manifest.json: branches: missing field"),
    (lambda d: d["layers"][1].pop("cout"),
     "manifest.json: layers[1].cout: missing field (layer 'layer1.0.conv1')"),
    (lambda d: d["layers"][0]["gate"].pop("group_size"),
     "manifest.json: layers[0].gate.group_size: missing field (layer 'conv1')"),
    (lambda d: d["layers"][0]["gate"].update(shape=[2, 8, 6, 5]),
     "gate shape [2, 8, 6, 5] does not match the layer"),
    (lambda d: d["layers"][0].update(cout=0), "cout must be a positive integer"),
    (lambda d: d.update(version="one"), "version: expected 'MAJOR.MINOR'"),
])
def test_manifest_errors_name_the_field(
        trace: tuple[Path, dict[int, tuple[Masks, Masks]]], edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path, _ = trace
    edit_json(path / "manifest.json", edit)
    with pytest.raises(TraceError) as error:
        open_trace(path)
    assert str(error.value).startswith(f"trace {path}: ")
    assert message in str(error.value)


def test_missing_or_unparsable_manifest(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace directory"):
        open_trace(tmp_path / "nope")
    with pytest.raises(TraceError, match=r"manifest\.json: missing"):
        open_trace(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": ')
    with pytest.raises(TraceError, match=r"manifest\.json: invalid JSON"):
        open_trace(tmp_path)


# ---------------------------------------------------------------------------------------------
# Determinism, writer validation, reader lookups
# ---------------------------------------------------------------------------------------------


def test_deterministic_bytes(tmp_path: Path) -> None:
    write_small_trace(tmp_path / "a", seed=5)
    write_small_trace(tmp_path / "b", seed=5)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                     if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*")
                     if p.is_file())
    assert files_a == files_b and len(files_a) == 7
    for name in files_a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_create_refuses_existing_directories(tmp_path: Path) -> None:
    path = tmp_path / "t"
    write_small_trace(path)
    with pytest.raises(TraceError, match="not empty"):
        TraceWriter.create(path, {}, small_layers())
    TraceWriter.create(path, {"second": True}, small_layers(), overwrite=True)
    assert open_trace(path).steps == []
    assert open_trace(path).manifest.producer == {"second": True}
    (path / "notes.txt").write_text("mine")
    with pytest.raises(TraceError, match=r"refusing to overwrite: 'notes\.txt'"):
        TraceWriter.create(path, {}, small_layers(), overwrite=True)
    assert (path / "manifest.json").exists()  # nothing was deleted


def bad_write(writer: TraceWriter, layers: list[TraceLayer], case: str) -> None:
    rng = np.random.default_rng(0)
    gates, weights = random_gates(layers, rng), random_weights(layers, rng)
    stats: dict = {"loss": 1.0}  # type: ignore[type-arg]
    step = 1
    if case == "unknown layer":
        gates[("fc9", 1)] = gates[("conv1", 1)]
    elif case == "branch":
        gates[("conv1", 3)] = gates[("conv1", 1)]
    elif case == "shape":
        gates[("conv1", 2)] = gates[("conv1", 2)][:, :4]
    elif case == "dtype":
        gates[("conv1", 2)] = gates[("conv1", 2)].astype(np.float32)
    elif case == "uint8":
        gates[("conv1", 2)] = gates[("conv1", 2)].astype(np.uint8) * 2
    elif case == "missing gate":
        del gates[("layer1.0.conv1", 2)]
    elif case == "missing weight":
        del weights[("head.0", 1)]
    elif case == "gate for ungated layer":
        gates[("head.0", 1)] = np.ones((2, 4, 1, 1), bool)
    elif case == "step order":
        step = 0
    elif case == "reserved stats":
        stats["density"] = 0.5
    elif case == "bad stats":
        stats["when"] = object()
    writer.write_step(step, gates, weights, stats)


@pytest.mark.parametrize(("case", "message"), [
    ("unknown layer", "layer 'fc9', branch 1, gate mask: unknown layer"),
    ("branch", "layer 'conv1', branch 3, gate mask: branch must be 1..2"),
    ("shape", "layer 'conv1', branch 2, gate mask: shape [2, 4, 6, 6] does not match the "
              "manifest [2, 8, 6, 6]"),
    ("dtype", "dtype must be bool (or uint8 0/1), got float32"),
    ("uint8", "a uint8 mask must hold only 0 and 1"),
    ("missing gate", "step 1, layer 'layer1.0.conv1', branch 2, gate mask: missing"),
    ("missing weight", "layer 'head.0', branch 1, weight mask: missing: every branch of this "
                       "layer needs a weight mask (pass None if unchanged)"),
    ("gate for ungated layer", "the manifest declares no gate mask for this layer"),
    ("step order", "step 0 must be greater than the last written step 0"),
    ("reserved stats", "stats key 'density' is reserved"),
    ("bad stats", "stats.when: a object cannot be stored in JSON"),
])
def test_writer_rejects_bad_input(tmp_path: Path, case: str, message: str) -> None:
    layers = small_layers()
    rng = np.random.default_rng(0)
    writer = TraceWriter.create(tmp_path / "t", {}, layers)
    writer.write_step(0, random_gates(layers, rng), random_weights(layers, rng))
    files = sorted((tmp_path / "t" / "steps").iterdir())
    with pytest.raises(TraceError) as error:
        bad_write(writer, layers, case)
    assert message in str(error.value)
    assert str(error.value).startswith(f"trace {tmp_path / 't'}: ")
    assert sorted((tmp_path / "t" / "steps").iterdir()) == files  # nothing written
    assert writer.last_step == 0


def test_writer_misc_errors(tmp_path: Path) -> None:
    layers = small_layers()
    rng = np.random.default_rng(0)
    writer = TraceWriter.create(tmp_path / "t", {}, layers)
    with pytest.raises(TraceError, match="no earlier step stores this weight mask"):
        writer.write_step(0, random_gates(layers, rng),
                          {k: None for k in random_weights(layers, rng)})
    with pytest.raises(TraceError, match="non-negative integer"):
        writer.write_step(-1, random_gates(layers, rng), random_weights(layers, rng))
    writer.close()
    with pytest.raises(TraceError, match="closed"):
        writer.write_step(0, random_gates(layers, rng), random_weights(layers, rng))
    with pytest.raises(TraceError, match=r"producer\.bad: a set cannot be stored"):
        TraceWriter.create(tmp_path / "u", {"bad": {1}}, layers)
    with pytest.raises(TraceError, match="duplicate layer names"):
        TraceWriter.create(tmp_path / "u", {}, layers + layers[:1])
    with pytest.raises(TraceError, match="compression_level"):
        TraceWriter.create(tmp_path / "u", {}, layers, compression_level=10)
    assert not (tmp_path / "u").exists()


def test_nonfinite_loss_becomes_null(tmp_path: Path) -> None:
    layers = small_layers()
    rng = np.random.default_rng(0)
    with TraceWriter.create(tmp_path / "t", {}, layers) as writer:
        writer.write_step(0, random_gates(layers, rng), random_weights(layers, rng),
                          {"loss": float("nan"), "grad_norm": np.float32(np.inf), "lr": 0.1})
    stats = open_trace(tmp_path / "t").stats(0)
    assert stats["loss"] is None and stats["grad_norm"] is None and stats["lr"] == 0.1


def test_reader_lookup_errors(trace: tuple[Path, dict[int, tuple[Masks, Masks]]]) -> None:
    path, _ = trace
    reader = open_trace(path)
    with pytest.raises(TraceError, match=r"no step 4 in this trace \(steps 0..7, 3 recorded\)"):
        reader.gate(4, "conv1", 1)
    with pytest.raises(TraceError, match="no layer 'fc9'"):
        reader.weight(0, "fc9", 1)
    with pytest.raises(TraceError, match=r"branch must be 1\.\.2"):
        reader.gate(0, "conv1", 3)
    with pytest.raises(TraceError, match="has no gate mask"):
        reader.gate(0, "head.0", 1)
    with pytest.raises(TraceError, match="no step 4"):
        reader.stats(4)


def test_import_does_not_load_torch() -> None:
    code = "import sys, accelsim.trace; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_gate_spec_from_before_format_1_2_reads_as_straight_through(tmp_path: Path) -> None:
    """Format 1.2 added the gate's ``gradient``; an older trace without it was recorded by the
    straight-through recorder, and reads so."""
    from accelsim.network import resnet20
    from accelsim.trace import open_trace
    from accelsim.trace.synth import SynthConfig, synthesize

    path = synthesize(resnet20(batch=2, image_size=8), tmp_path / "t",
                      SynthConfig(steps=1, gate_sparsity=0.5, gate_groups=2,
                                  gate_gradient="masked"))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == FORMAT_VERSION
    manifest["version"] = "1.1"
    for layer in manifest["layers"]:
        if layer["gate"] is not None:
            assert layer["gate"].pop("gradient") == "masked"
    (path / "manifest.json").write_text(json.dumps(manifest))
    gates = [item.gate for item in open_trace(path).layers if item.gate is not None]
    assert gates and all(g.gradient == "straight_through" for g in gates)
