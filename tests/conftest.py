"""Shared fixtures: paths of the bundled presets and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.config import HardwareConfig, load_hardware

ROOT = Path(__file__).resolve().parent.parent
SYSTOLIC = ROOT / "hw_configs" / "systolic_32x32_45nm.yaml"
FP8 = ROOT / "hw_configs" / "fp8_tensor_edge_28nm.yaml"
PRESETS = tuple(sorted((ROOT / "hw_configs").glob("*.yaml")))  # every shipped preset


@pytest.fixture(scope="session")
def systolic_hw() -> HardwareConfig:
    return load_hardware(SYSTOLIC)


@pytest.fixture(scope="session")
def fp8_hw() -> HardwareConfig:
    return load_hardware(FP8)


def run_cli(*args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``accelsim ARGS`` run in-process; any exception but the
    CLI's own exit fails the calling test."""
    from click.testing import CliRunner

    from accelsim.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="accelsim")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
