"""Shared fixtures: paths of the bundled presets and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.config import HardwareConfig, load_hardware

ROOT = Path(__file__).resolve().parent.parent
SYSTOLIC = ROOT / "hw_configs" / "systolic_32x32_45nm.yaml"
FP8 = ROOT / "hw_configs" / "fp8_tensor_edge_28nm.yaml"
PRESETS = (SYSTOLIC, FP8)


@pytest.fixture(scope="session")
def systolic_hw() -> HardwareConfig:
    return load_hardware(SYSTOLIC)


@pytest.fixture(scope="session")
def fp8_hw() -> HardwareConfig:
    return load_hardware(FP8)
