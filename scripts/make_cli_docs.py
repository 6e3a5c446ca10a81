"""Regenerate docs/cli.md from the commands' own --help texts.

    .venv/bin/python scripts/make_cli_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.cli import main  # noqa: E402

HEADER = """# The accelsim command line

Generated from each command's `--help` by `scripts/make_cli_docs.py` (a test keeps it in sync).
Exit status of every command: 0 success, 1 internal failure (a bug: one line asking for a
report with the command and its input; `ACCELSIM_DEBUG=1` shows the traceback; also, silently,
when the reader of a pipe closed it: `accelsim config keys | head`), 2 bad input (one line naming
the file and the field, no traceback), 130 interrupted. Units: cycles are clock
cycles of the PE array, traffic in bytes, index storage in bits, energy in pJ, 1 MAC = 2 FLOPs.

Bad input includes click's own usage errors (an unknown option, a missing argument, a value out
of an option's range), printed as one line ending in the command's `--help`; an option that does
not apply to what was asked (`simulate TRACE --batch 8`: a trace has its own batch; `record
--algo cdg --weight-pattern nm:2:4`) is an error, never silently ignored. Every `--out` is
checked before any work starts: it must not be a file or lie under one, and accelsim must be able
to create and write it (a probe directory is made and removed in it, or in its nearest existing
parent), so a read-only or pseudo file system fails at once rather than after the simulation.

Typical session:

    accelsim record --config workloads/recipes/cpu-resnet20-fmnist-scdg.yaml --out runs/scdg
    accelsim simulate runs/scdg --hw hw_configs/fp8_tensor_edge_28nm.yaml --out out/scdg
    accelsim compare runs/cdg runs/scdg --hw hw_configs/fp8_tensor_edge_28nm.yaml --out out/cmp
    accelsim sweep runs/cdg runs/scdg --hw hw_configs/fp8_tensor_edge_28nm.yaml \\
        --vary pe_array.rows=8,16,32 --vary decoder.compaction=false,true --out out/sweep
    accelsim report out/cmp/runs/* out/sweep --out out/report
"""


def commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = []
    for name in sorted(group.commands):
        command = group.commands[name]
        found.append([*prefix, name])
        if isinstance(command, click.Group):
            found.extend(commands(command, [*prefix, name]))
    return found


def render() -> str:
    parts = [HEADER]
    runner = CliRunner()
    for words in commands(main, []):
        result = runner.invoke(main, [*words, "--help"], prog_name="accelsim",
                               terminal_width=100)
        parts.append(f"\n## accelsim {' '.join(words)}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render())
    print("wrote docs/cli.md")
