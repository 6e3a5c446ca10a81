"""Hardware configuration: presets load, every error kind is one line naming file and key."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from accelsim.config import (
    HardwareConfig,
    build_hardware,
    iter_keys,
    load_hardware,
    parse_override,
    plain,
    with_overrides,
)
from accelsim.errors import InputError
from tests.conftest import FP8, PRESETS, SYSTOLIC

PUBLIC_KEYS = [
    "pe_array.rows", "pe_array.cols", "pe_array.vector_width", "pe_array.dataflow",
    "pe_array.precision", "pe_array.clock_mhz", "decoder.indices_per_cycle", "decoder.compaction",
    "buffers.global_kib", "dram.bandwidth_gbps", "dram.energy_pj_per_bit",
]


def write_config(tmp_path: Path, raw: dict, name: str = "hw.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def preset_raw(path: Path = FP8) -> dict:
    return yaml.safe_load(path.read_text())


def error_of(tmp_path: Path, raw: dict, overrides: tuple[str, ...] = ()) -> str:
    path = write_config(tmp_path, raw)
    with pytest.raises(InputError) as info:
        load_hardware(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_presets_load_and_cite_every_energy_number(path: Path) -> None:
    hw = load_hardware(path)
    assert hw.kind == "hardware" and hw.version == 1
    for action, entry in hw.energy.items():
        assert entry.source.strip(), action
    assert hw.mac_energy_pj > 0


def test_preset_names_and_capabilities(systolic_hw: HardwareConfig,
                                       fp8_hw: HardwareConfig) -> None:
    assert "systolic" in SYSTOLIC.name and "fp8" in FP8.name
    assert systolic_hw.pe_array.rows == systolic_hw.pe_array.cols == 32
    assert systolic_hw.sparsity_support.nm_m and "fw" in systolic_hw.sparsity_support.weight
    assert fp8_hw.pe_array.precision == "fp8" and fp8_hw.pe_array.dataflow == "tensor"
    assert set(fp8_hw.sparsity_support.gate) == {"fw", "bd", "wg"}


def test_public_keys_exist_and_override() -> None:
    known = {key for key, _, _ in iter_keys()}
    assert set(PUBLIC_KEYS) <= known
    hw = load_hardware(FP8, ["pe_array.rows=8", "decoder.compaction=true",
                             "dram.bandwidth_gbps=3.5", "pe_array.dataflow=tensor"])
    assert hw.pe_array.rows == 8 and hw.decoder.compaction is True
    assert hw.dram.bandwidth_gbps == 3.5


def _leaf_value(hw: HardwareConfig, key: str) -> object:
    node: object = hw
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def _leaf_keys(hw: HardwareConfig) -> list[str]:
    keys = []
    for key, _, _ in iter_keys():
        if "<action>" in key:
            keys += [key.replace("<action>", action) for action in hw.energy]
        else:
            keys.append(key)
    return keys


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_key_overrides_with_its_own_value_and_rejects_a_wrong_type(path: Path) -> None:
    hw = load_hardware(path)
    for key in _leaf_keys(hw):
        value = plain(_leaf_value(hw, key))
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        assert load_hardware(path, [f"{key}={text}"]) == hw, key
        wrong = "[1, 2]" if not isinstance(value, list) else "7"
        with pytest.raises(InputError, match=re.escape(f"--set {key}")):
            load_hardware(path, [f"{key}={wrong}"])


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["pe_array"]["colums"] = 4
    message = error_of(tmp_path, raw)
    assert "pe_array.colums: unknown key (did you mean 'cols'?)" in message


def test_unknown_section_and_override_key(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["drams"] = {}
    assert "drams: unknown key (did you mean 'dram'?)" in error_of(tmp_path, raw)
    with pytest.raises(InputError, match=r"--set: buffers.global_kb: unknown key \(did you mean "
                       r"'global_kib'\?\)"):
        parse_override("buffers.global_kb=3")


def test_wrong_type(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["pe_array"]["rows"] = "sixteen"
    assert "pe_array.rows: expected an integer, got 'sixteen'" in error_of(tmp_path, raw)
    raw = preset_raw()
    raw["decoder"]["compaction"] = "yes please"
    assert "decoder.compaction: expected true or false" in error_of(tmp_path, raw)


def test_out_of_range_names_the_range(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["dram"]["bandwidth_gbps"] = 0
    assert "dram.bandwidth_gbps: 0.0 is out of range (must be > 0 and <= 100000)" in error_of(
        tmp_path, raw)
    message = error_of(tmp_path, preset_raw(), ("pe_array.rows=0",))
    assert "--set pe_array.rows: 0 is out of range (must be >= 1 and <= 4096)" in message


def test_bad_choice_suggests(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["pe_array"]["dataflow"] = "wss"
    assert "pe_array.dataflow: 'wss' is not one of ws, os, is, tensor (did you mean 'ws'?)" in \
        error_of(tmp_path, raw)


def test_missing_required_key(tmp_path: Path) -> None:
    raw = preset_raw()
    del raw["pe_array"]["clock_mhz"]
    assert "pe_array.clock_mhz: missing required key" in error_of(tmp_path, raw)
    raw = preset_raw()
    del raw["energy"]["mac_fp8"]
    assert "energy.mac_fp8: missing required key (needed for precision fp8)" in error_of(
        tmp_path, raw)


def test_impossible_combinations(tmp_path: Path) -> None:
    message = error_of(tmp_path, preset_raw(), ("pe_array.vector_width=3",))
    assert "vector_width 3 does not divide the gate group size 8" in message
    message = error_of(tmp_path, preset_raw(SYSTOLIC), ("pe_array.vector_width=4",))
    assert "pe_array.vector_width: must be 1 for the systolic dataflow 'ws'" in message
    message = error_of(tmp_path, preset_raw(), ("pe_array.accumulator_precision=fp8",
                                                "pe_array.precision=fp32"))
    assert "accumulator_precision: fp8 is narrower than the operand precision fp32" in message
    message = error_of(tmp_path, preset_raw(SYSTOLIC), ("decoder.formats=[bitmap]",))
    assert "decoder.formats: must include nm" in message


def test_all_errors_are_collected_into_one_line(tmp_path: Path) -> None:
    raw = preset_raw()
    raw["pe_array"]["rows"] = -1
    raw["dram"]["energy_pj_per_bit"] = "cheap"
    message = error_of(tmp_path, raw)
    assert "pe_array.rows" in message and "dram.energy_pj_per_bit" in message
    assert "(2 errors)" in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pe_array: [1, 2\n")
    with pytest.raises(InputError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_hardware(path)
    with pytest.raises(InputError, match=r"nope\.yaml: no such file"):
        load_hardware(tmp_path / "nope.yaml")
    path.write_text("!!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_hardware(path)


def test_with_overrides_validates_like_the_file(fp8_hw: HardwareConfig) -> None:
    smaller = with_overrides(fp8_hw, {"pe_array.rows": 4})
    assert smaller.pe_array.rows == 4 and fp8_hw.pe_array.rows == 16
    assert smaller.digest() != fp8_hw.digest()
    with pytest.raises(InputError, match=r"--set pe_array\.rows"):
        with_overrides(fp8_hw, {"pe_array.rows": 1.5})


def test_config_is_frozen_and_round_trips(fp8_hw: HardwareConfig) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp8_hw.pe_array.rows = 3  # type: ignore[misc]
    assert build_hardware(fp8_hw.to_dict()) == fp8_hw


def test_config_is_immutable_all_the_way_down_and_hashes_by_value(
        fp8_hw: HardwareConfig) -> None:
    """A config keys caches: no part of it can change, and equal configs hash equally."""
    with pytest.raises(AttributeError):
        fp8_hw.decoder.formats.append("coo")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        fp8_hw.energy["index_decode"] = fp8_hw.energy["mac_fp8"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        fp8_hw.energy._items = {}  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del fp8_hw.energy._items  # type: ignore[attr-defined]
    twin = build_hardware(fp8_hw.to_dict())
    assert twin == fp8_hw and hash(twin) == hash(fp8_hw) and twin.digest() == fp8_hw.digest()
    other = with_overrides(fp8_hw, {"energy.index_decode.pj": 0.5})
    assert other != fp8_hw and {fp8_hw: 1, other: 2}[twin] == 1
    assert pickle.loads(pickle.dumps(fp8_hw)) == fp8_hw
    assert json.loads(json.dumps(fp8_hw.to_dict())) == fp8_hw.to_dict()  # plain data


def test_config_docs_are_in_sync_with_the_schema() -> None:
    from scripts.make_config_docs import render

    docs = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert docs.read_text() == render(), "run scripts/make_config_docs.py"


def test_buffers_must_fit_the_array(tmp_path: Path) -> None:
    message = error_of(tmp_path, preset_raw(), ("buffers.words_per_cycle=100",))
    assert "100 words/cycle cannot be spread evenly over 16 banks" in message
    message = error_of(tmp_path, preset_raw(), ("buffers.register_file_words=8",))
    assert "buffers.register_file_words: 8 words cannot hold 304" in message


@pytest.mark.parametrize(("sync_tiles", "stage"), [(1, 1), (2, 1), (16, 1), (64, 1), (16, 4)])
def test_deeper_queues_need_the_register_file_to_stage_them(tmp_path: Path, sync_tiles: int,
                                                            stage: int) -> None:
    """A PE's private queue of sync_tiles units holds double-buffered operands of stage_steps
    reduction steps for each queued unit and its 8 lanes, and each unit's 8 FP16 partial sums
    (2 FP8 words each)."""
    need = 2 * stage * (sync_tiles + 8) + sync_tiles * 8 * 2
    knobs = (f"pe_array.sync_tiles={sync_tiles}", f"pe_array.stage_steps={stage}")
    load_hardware(write_config(tmp_path, preset_raw(), "fits.yaml"),
                  (*knobs, f"buffers.register_file_words={need}"))
    message = error_of(tmp_path, preset_raw(), (*knobs, f"buffers.register_file_words={need - 1}"))
    steps = f"{stage} reduction step{'s' if stage > 1 else ''} (pe_array.stage_steps)"
    assert f"buffers.register_file_words: {need - 1} words cannot hold {need}: with " \
           f"pe_array.sync_tiles {sync_tiles} each PE stages {steps} of operands" in message


def test_reduction_lanes_need_vector_units_and_no_nm_multiplexers(tmp_path: Path) -> None:
    message = error_of(tmp_path, preset_raw(), ("pe_array.fw_lanes=reduction",))
    assert "sparsity_support.nm_m: must be empty with pe_array.fw_lanes: reduction" in message
    message = error_of(tmp_path, preset_raw(), ("pe_array.fw_lanes=reduction",
                                                "sparsity_support.nm_m=[]",
                                                "decoder.skip_granularity=element"))
    assert "decoder.skip_granularity: must be vector with pe_array.fw_lanes: reduction" in message
    hw = load_hardware(write_config(tmp_path, preset_raw(), "ok.yaml"),
                       ("pe_array.fw_lanes=reduction", "sparsity_support.nm_m=[]"))
    assert hw.pe_array.fw_lanes == "reduction"
    message = error_of(tmp_path, preset_raw(SYSTOLIC), ("pe_array.wg_lanes=input_channels",))
    assert "pe_array.wg_lanes: applies to the tensor dataflow only" in message


def test_adder_tree_queues_need_their_staging(tmp_path: Path) -> None:
    """FW trees stage vector_width reduction steps per queued output and keep one partial sum
    each: with FP16 operands and accumulators, sync_tiles 16 and 8 lanes that is
    2 x 8 x 17 + 16 = 288 words, more than the output-channel mapping's 2 x 24 + 128 = 176."""
    overrides = ("pe_array.fw_lanes=reduction", "sparsity_support.nm_m=[]",
                 "pe_array.precision=fp16", "pe_array.accumulator_precision=fp16",
                 "buffers.register_file_words=200")
    message = error_of(tmp_path, preset_raw(), overrides)
    assert "buffers.register_file_words: 200 words cannot hold 288: with reduction lanes " \
        "and sync_tiles 16 each PE stages 1 reduction step (pe_array.stage_steps) of 8 " \
        "operands" in message


def test_bd_reduction_lanes_are_checked_like_fw_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, preset_raw(), ("pe_array.bd_lanes=reduction",
                                                "decoder.skip_granularity=element"))
    assert "decoder.skip_granularity: must be vector with pe_array.bd_lanes: reduction" in message
    message = error_of(tmp_path, preset_raw(SYSTOLIC), ("pe_array.bd_lanes=reduction",))
    assert "pe_array.bd_lanes: applies to the tensor dataflow only" in message
    # BD's trees leave FW's N:M multiplexers alone
    hw = load_hardware(write_config(tmp_path, preset_raw(), "ok.yaml"),
                       ("pe_array.bd_lanes=reduction",))
    assert hw.pe_array.bd_lanes == "reduction" and hw.sparsity_support.nm_m == (4, 8)
