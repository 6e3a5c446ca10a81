"""``accelsim sweep``: traces replayed over a grid of hardware overrides (see accelsim.sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from accelsim.cli_options import hardware_options, out_dir_option
from accelsim.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

EXIT_INTERRUPTED = 130


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_best(best: pd.DataFrame) -> str:
    """The best-points table as aligned text, one line per trace and metric."""
    if best.empty:
        return "no best points (no finite metric values)"
    from accelsim.units import energy_text

    columns = [c for c in best.columns if c not in ("point_id", "steps")]

    def value(row: pd.Series) -> str:  # per step: energies in the unit that reads best, ms
        metric, number = str(row["metric"]), float(row["value"])
        steps = max(1, int(row.get("steps", 1)))  # best_points: 1 where not known
        if metric.endswith("_pj"):
            return energy_text(number / steps)
        return f"{number / steps * 1e3:.4g} ms" if metric.startswith("seconds") \
            else _cell(number)

    cells = [[value(row) if c == "value" else _cell(row[c]) for c in columns]
             for _, row in best.iterrows()]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    header = [c if c != "value" else "value (per step)" for c in columns]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


@click.command("sweep")
@click.argument("traces", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path), metavar="TRACE...")
@hardware_options(hw_help="Base hardware YAML (see hw_configs/); --set applies to every point.",
                  set_example="pe_array.clock_mhz=500")
@click.option("--vary", "vary", multiple=True, metavar="KEY=V1,V2,...",
              help="A grid axis: a dotted hardware key and its values, e.g. --vary "
              "pe_array.rows=8,16,32 (repeatable; axes multiply, first slowest). Values in "
              "the key's unit (see `accelsim config keys`).")
@click.option("--grid", "grid_files", multiple=True, metavar="GRID.yaml",
              type=click.Path(dir_okay=False, path_type=Path),
              help="A grid file with `vary:` axes and/or `zip:` lists (docs/sweeps.md; "
              "repeatable; its axes come after the --vary axes).")
@out_dir_option("Output directory: sweep.json, points/, results.csv, results.parquet. Must "
                "be empty or absent unless --resume.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes, each replaying one (trace, point) at a time "
              "[default: all cores].")
@click.option("--dask", "dask_address", metavar="ADDRESS", default=None,
              help="Run the points on the Dask scheduler at ADDRESS (e.g. tcp://host:8786) "
              "instead of local processes; workers must see the trace paths.")
@click.option("--resume", is_flag=True,
              help="Finish the sweep stored in --out: compute only the points missing there "
              "(the sweep must be the same: base config, grid, traces, phases).")
@click.option("--phases", default="fw,bd,wg", show_default=True,
              help="Training phases: fw (forward), bd (backward data), wg (weight gradient).")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.pass_context
def sweep_command(ctx: click.Context, traces: tuple[Path, ...], hw_file: Path,
                  overrides: tuple[str, ...], vary: tuple[str, ...],
                  grid_files: tuple[Path, ...], out_dir: Path, workers: int | None,
                  dask_address: str | None, resume: bool, phases: str,
                  no_progress: bool) -> None:
    """Replay traces on every point of a hardware grid; tabulate and pick the best points.

    TRACE is a trace directory (or a run directory of `accelsim record`). Each (trace, grid
    point) is one replay, stored as OUT/points/<id>.json as soon as it
    finishes: a killed sweep loses only the points in flight and --resume computes the rest.
    At the end the points are assembled into OUT/results.csv and OUT/results.parquet (one row
    per trace x point x scope, scope = total, fw, bd, wg, branch1, branch2; cycles in clock
    cycles, energy in pJ, traffic in bytes, index in bits) and the best point per trace is
    printed on absolute figures: least time and energy (whole step with non-MAC work, and MAC
    jobs alone), highest TFLOPS/W.

    Example (2 traces x 12 points on 4 processes; grid files: docs/sweeps.md):

    \b
      accelsim sweep runs/cdg runs/scdg --hw hw_configs/fp8_tensor_edge_28nm.yaml \\
          --vary pe_array.rows=8,16,32 --vary decoder.compaction=false,true \\
          --vary dram.bandwidth_gbps=12.8,25.6 --out out/sweep --workers 4
    """
    from accelsim.sweep import count_stored, grid_from_options, run_sweep

    if not vary and not grid_files:
        raise InputError("give at least one --vary KEY=V1,V2,... or --grid GRID.yaml",
                         field="sweep")
    points = grid_from_options(vary, grid_files)
    try:
        result = run_sweep(list(traces), hw_file, overrides, points, out_dir, phases=phases,
                           workers=workers, dask_address=dask_address, resume=resume,
                           progress=not no_progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {count_stored(out_dir)} points stored in "
                   f"{out_dir / 'points'}; run again with --resume to finish", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    click.echo(f"{result.points_total} points ({result.points_computed} computed, "
               f"{result.points_reused} already stored) in {result.seconds:.1f} s")
    click.echo("best points (scope total):")
    click.echo(format_best(result.best))
    click.echo(f"wrote {result.results_csv}, {result.results_parquet} and {result.sweep_json}")
