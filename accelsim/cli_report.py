"""``accelsim report`` and ``accelsim compare``: figures, tables and a report page.

The main group (``accelsim.cli``) registers both commands and turns InputError into one line with
exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from accelsim.cli_options import echo_line, hardware_options, out_dir_option


@click.command("report")
@click.argument("dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path), metavar="DIR...")
@out_dir_option("Report directory: report.md, report.html, schemes.csv/.md, gap.csv and "
                "figures/ (PNG and SVG). Files there are replaced.")
def report_command(dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Plots, tables and a report page from simulate and sweep output directories.

    Each DIR is an output of `accelsim simulate` (results.csv, summary.json, run.json) or of
    `accelsim sweep` (sweep.json, results.csv). Replayed traces get per-layer speedup, FLOPs
    vs hardware, energy breakdown and gap-by-cause figures and a row in the structured-vs-
    unstructured table; sweeps get their best points on absolute time and energy,
    metric-vs-parameter lines and each trace's Pareto front of time against energy.
    OUT/report.html is self-contained (images inlined). See docs/reports.md.

    Example:

      accelsim report out/cdg out/scdg out/sweep --out out/report
    """
    from accelsim.report import build_report

    path = build_report(list(dirs), out_dir)
    click.echo(f"wrote {path} and {out_dir / 'report.html'} (figures in {out_dir / 'figures'})")


@click.command("compare")
@click.argument("traces", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path), metavar="TRACE...")
@hardware_options(set_example="decoder.compaction=true")
@out_dir_option("Output directory: runs/<trace>/ (one replay per trace) and the report.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes replaying one trace's steps in parallel (results are identical).")
def compare_command(traces: tuple[Path, ...], hw_file: Path, overrides: tuple[str, ...],
                    out_dir: Path, workers: int) -> None:
    """Replay several traces on one hardware config and report them side by side.

    Each TRACE (from `accelsim record` or `accelsim trace synth`) is replayed into
    OUT/runs/<name>/ (a run already there for the same trace and hardware digest is reused),
    then `accelsim report` runs over them into OUT: the structured-vs-unstructured table,
    "why the gap", and every figure.

    Example:

      accelsim compare traces/cdg traces/scdg traces/synccp_2_4 --hw
      hw_configs/fp8_tensor_edge_28nm.yaml --set decoder.compaction=true --out out/compare
    """
    from accelsim.api import compare, unexploited_sparsity
    from accelsim.config import load_hardware
    from accelsim.trace import resolve_trace_dir
    from accelsim.trace.format import MANIFEST_NAME

    hw = load_hardware(hw_file, overrides)
    for trace_dir in map(resolve_trace_dir, traces):
        if (trace_dir / MANIFEST_NAME).is_file():  # compare names what is not a trace
            for warning in unexploited_sparsity(trace_dir, hw):
                echo_line(f"warning: {warning}")

    def progress(name: str, reused: bool) -> None:
        click.echo(f"{name}: {'reused existing run' if reused else 'replayed'}")

    path = compare(list(traces), hw, out_dir, workers=workers, on_run=progress)
    click.echo(f"wrote {path} and {out_dir / 'report.html'} (figures in {out_dir / 'figures'})")
