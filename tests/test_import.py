"""`import accelsim` (and the whole simulator and CLI) must never load torch."""

from __future__ import annotations

import subprocess
import sys


def test_accelsim_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import accelsim, accelsim.cli, accelsim.api, accelsim.config, accelsim.network\n"
        "import accelsim.engine.simulator, accelsim.trace\n"
        "from click.testing import CliRunner\n"
        "CliRunner().invoke(accelsim.cli.main, ['--help'])\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
