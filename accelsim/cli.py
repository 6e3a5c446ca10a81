"""The ``accelsim`` command line: thin; parses, calls the library, prints.

Exit status: 0 success, 1 simulation failure (an internal error: one line asking for a bug
report; ``ACCELSIM_DEBUG=1`` shows the traceback; silently, a closed output pipe), 2 usage or
input error, or a file the system refused to read or write (one line, no traceback), 130
interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from accelsim import __version__
from accelsim.cli_options import (
    echo_line,
    hardware_options,
    network_shape_options,
    out_dir_option,
    schema_option_type,
)
from accelsim.cli_report import compare_command, report_command
from accelsim.cli_sweep import sweep_command
from accelsim.cli_trace import trace_group
from accelsim.errors import InputError, SimulationError
from accelsim.network import BUILTIN_NETWORKS

INTERRUPTED = "interrupted: finished outputs are complete, nothing half-written"
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class AccelsimGroup(click.Group):
    """A click group that turns library errors and click's own usage errors into one-line
    messages and exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as error:  # a group called without a command: its help
            error.show()
            sys.exit(error.exit_code)
        except click.ClickException as error:  # usage errors (exit 2), unreadable files
            echo_line(f"error: {click_error_line(error)}")
            sys.exit(error.exit_code)
        except click.Abort:  # Ctrl-C while the command line was parsed (the --out probe)
            click.echo(INTERRUPTED, err=True)
            sys.exit(130)
        # non-standalone click returns ctx.exit's code; our commands themselves return None
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InputError as error:
            echo_line(f"error: {error}")
            ctx.exit(2)
        except SimulationError as error:
            echo_line(f"simulation failed: {error}")
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            ctx.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except Exception as error:
            if os.environ.get("ACCELSIM_DEBUG") == "1":
                raise
            if isinstance(error, BrokenPipeError):  # `accelsim config keys | head`: quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                ctx.exit(1)
            if isinstance(error, OSError) and error.errno is not None:
                # the file system said no (a path the user gave, a full disk): one line, exit 2
                where = f"{error.filename}: " if error.filename else ""
                echo_line(f"error: {where}{error.strerror or error}")
                ctx.exit(2)
            # anything else is a failure of ours (a bug), not bad input: one line, exit 1
            echo_line(f"simulation failed: {internal_error(error)}")
            ctx.exit(1)
        return None


def click_error_line(error: click.ClickException) -> str:
    """click's error as one line: ``accelsim simulate: No such option '--outt'. Did you mean
    '--out'? (accelsim simulate --help)``."""
    text = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if ctx is None:
        return text
    help_hint = f" ({ctx.command_path} --help)" if isinstance(error, click.UsageError) else ""
    return f"{ctx.command_path}: {text}{help_hint}"


def internal_error(error: Exception) -> SimulationError:
    """An unexpected exception as the SimulationError a user sees: what failed, and a request
    for a bug report with the command and its input."""
    text = " ".join(str(error).split())[:200] or "no message"
    return SimulationError(f"internal error ({type(error).__name__}: {text}); this is a bug: "
                           "please report it with the command and its input (ACCELSIM_DEBUG=1 "
                           "shows the traceback)")


@click.group(cls=AccelsimGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(__version__, prog_name="accelsim")
def main() -> None:
    """accelsim: what sparse contrastive training buys on a training accelerator.

    Units everywhere: cycles (clock cycles of the PE array), bytes, pJ (picojoules), MACs
    (multiply-accumulates; 1 MAC = 2 FLOPs), MHz, GB/s, KiB.
    """


# ---------------------------------------------------------------------------------------------
# accelsim config ...
# ---------------------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Check hardware configs and list their keys."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a dotted key, e.g. --set pe_array.rows=16 (repeatable).")
def config_check(file: Path, overrides: tuple[str, ...]) -> None:
    """Validate a hardware YAML file (and overrides); print its peak numbers.

    Example: accelsim config check hw_configs/fp8_tensor_edge_28nm.yaml --set pe_array.rows=8
    """
    from accelsim.config import load_hardware

    hw = load_hardware(file, overrides)
    pe = hw.pe_array
    peak_tflops = 2 * pe.macs_per_cycle * pe.clock_mhz * 1e6 / 1e12
    click.echo(f"{file}: ok ({hw.name}, digest {hw.digest()})")
    click.echo(f"  array {pe.rows}x{pe.cols}x{pe.vector_width} {pe.dataflow} {pe.precision} @ "
               f"{pe.clock_mhz:g} MHz = {pe.macs_per_cycle} MACs/cycle, "
               f"{peak_tflops:.3f} peak TFLOPS")
    click.echo(f"  buffer {hw.buffers.global_kib:g} KiB, DRAM {hw.dram.bandwidth_gbps:g} GB/s "
               f"({hw.dram_bytes_per_cycle:.2f} B/cycle), {hw.dram.energy_pj_per_bit:g} pJ/bit")
    support = hw.sparsity_support
    click.echo(f"  sparsity: gate in {support.gate or 'no phase'}, weights in "
               f"{support.weight or 'no phase'}, N:M M in {support.nm_m or 'none'}")


@config_group.command("keys")
def config_keys() -> None:
    """List every configuration key with its type, unit, range and meaning.

    Example: accelsim config keys | grep dram
    """
    from accelsim.config import describe_bounds, iter_keys, type_label

    for key, meta, tp in iter_keys():
        bounds = describe_bounds(meta, choice_separator="|", space="")
        unit = f" [{meta['unit']}]" if meta.get("unit") else ""
        click.echo(f"{key:44s} {type_label(tp):14s}{unit} {' '.join(bounds)}  {meta['doc']}")


# ---------------------------------------------------------------------------------------------
# accelsim simulate
# ---------------------------------------------------------------------------------------------


_SOURCE_ONLY = {  # simulate's options that apply to some sources only, by parameter name
    "batch": ("--network", "--topology"), "branches": ("--network", "--topology"),
    "width": ("--network",), "in_channels": ("--network",), "image_size": ("--network",),
    "workers": ("TRACE",),
}


_WHY_NOT = {("batch", "TRACE"): " (a trace's batch is the one it was recorded with)",
            ("branches", "TRACE"): " (a trace's branches are the ones it recorded)"}


def _check_applicable(ctx: click.Context, source: str) -> None:
    """Options given that do not apply to ``source`` (TRACE, --network, --topology) are
    errors: a replayed trace has its own batch and branches, a topology its own shapes."""
    for name, sources in _SOURCE_ONLY.items():
        given = ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        if source not in sources and given:
            option = "--" + name.replace("_", "-")
            raise InputError(f"applies to {' and '.join(sources)} only, not to {source}"
                             f"{_WHY_NOT.get((name, source), '')}", field=option)


@main.command("simulate")
@click.argument("trace", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--topology", type=click.Path(dir_okay=False, path_type=Path),
              help="SCALE-Sim topology CSV (interpreted exactly as SCALE-Sim does: no padding).")
@click.option("--network", "network_name", type=click.Choice(list(BUILTIN_NETWORKS)),
              help="A built-in network: CIFAR-style resnet20 / resnet18 (3x3 stem, 32x32) or "
              "ImageNet-style resnet18-imagenet / resnet50-imagenet (7x7 stem, max-pool, "
              "224x224).")
@hardware_options()
@click.option("--phases", default="fw,bd,wg", show_default=True,
              help="Training phases: fw (forward), bd (backward data), wg (weight gradient).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Images per branch [default: 256 for --network, 1 for --topology].")
@network_shape_options
@click.option("--branches", type=click.IntRange(1, 2), default=None,
              help="Contrastive branches, each a full training pass [default: 2 for --network, "
              "1 for --topology].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes replaying trace steps in parallel (results are identical).")
@out_dir_option("Output directory for results.csv and summary.json.")
def simulate(trace: Path | None, topology: Path | None, network_name: str | None,
             hw_file: Path, overrides: tuple[str, ...], phases: str, batch: int | None,
             width: float, in_channels: int, image_size: int | None, branches: int | None,
             workers: int, out_dir: Path) -> None:
    """Replay a trace, or simulate a dense step: one row per layer x branch x phase (x step).

    With TRACE (a directory from `accelsim record` or `accelsim trace synth`) every recorded step
    is replayed from its real mask bits. With --network or --topology a dense training step is
    simulated (topology rows with an N:M Sparsity column use SCALE-Sim's N:M timing).

    Writes OUT/results.csv (cycles in clock cycles, traffic in bytes, index in bits, energy in
    pJ; macs_effective is the FLOPs view, macs_issued what the hardware spends; hw.name and
    hw.digest name the config) and
    OUT/summary.json (speedup, flops_reduction, speedup_efficiency = speedup / flops_reduction,
    energy_reduction, index_reduction, TFLOPS/W; overall, per phase, per branch).

    Examples:

      accelsim simulate traces/cdg --hw hw_configs/fp8_tensor_edge_28nm.yaml --out out/cdg

      accelsim simulate --network resnet18 --hw hw_configs/fp8_tensor_edge_28nm.yaml --out out/

      accelsim simulate --topology net.csv --hw hw_configs/systolic_32x32_45nm.yaml --phases fw
      --set pe_array.dataflow=os --out out/
    """
    from accelsim.api import replay_to_dir, simulate_dense_to_dir, unexploited_sparsity
    from accelsim.config import load_hardware
    from accelsim.network import builtin_network, parse_phases, read_topology_csv
    from accelsim.trace import resolve_trace_dir

    sources = [s for s in (trace, topology, network_name) if s is not None]
    if len(sources) != 1:
        raise InputError("give exactly one of TRACE, --topology FILE or --network NAME",
                         field="simulate")
    ctx = click.get_current_context()
    _check_applicable(ctx, "TRACE" if trace is not None else "--topology"
                      if topology is not None else "--network")
    phase_list = parse_phases(phases)
    hw = load_hardware(hw_file, overrides)
    if trace is not None:
        trace_dir = resolve_trace_dir(trace)
        for warning in unexploited_sparsity(trace_dir, hw, phase_list):
            echo_line(f"warning: {warning}")
        summary = replay_to_dir(trace_dir, hw, out_dir, phases=phase_list,
                                workers=workers)
        click.echo(format_summary(summary))
        click.echo(f"wrote {out_dir / 'results.csv'} and {out_dir / 'summary.json'}")
        return
    if topology is not None:
        network = read_topology_csv(topology, batch=batch or 1)
        branch_count = branches or 1
    else:
        assert network_name is not None
        network = builtin_network(network_name, batch=batch or 256, width=width,
                                  in_channels=in_channels, image_size=image_size)
        branch_count = branches or 2
    summary = simulate_dense_to_dir(network, hw, out_dir, phases=phase_list,
                                    branches=tuple(range(1, branch_count + 1)))
    click.echo(format_summary(summary))
    click.echo(f"wrote {out_dir / 'results.csv'} and {out_dir / 'summary.json'}")


# ---------------------------------------------------------------------------------------------
# accelsim record (PyTorch, imported lazily: simulation never needs torch)
# ---------------------------------------------------------------------------------------------

_RECORD_OPTIONS = [  # (flag, RunConfig field, help): types, ranges and choices are RunConfig's
    ("--algo", "algo", "Sparsity algorithm [default: dense]."),
    ("--gate-groups", "gate_groups", "CDG gating groups G [default: 4]."),
    ("--gate-group-size", "gate_group_size",
     "SCDG channel-group size s [default: 8 for scdg, else 1]."),
    ("--gate-gradient", "gate_gradient",
     "How the gate's gradient is taken: straight_through needs the conditional output "
     "everywhere (FW cannot skip it), masked only where open [default: straight_through]."),
    ("--overlap", "overlap",
     "Fraction of output chunks whose base path is shared by both branches [default: 0; "
     "cgnet: 1]."),
    ("--weight-pattern", "weight_pattern",
     "SyncCP granularity: element, nm:N:M, nmt:N:M (transposable) or block:BOxBI "
     "[default: element]."),
    ("--final-sparsity", "final_sparsity", "SyncCP final sparsity of branch 1 [default: 0.8]."),
    ("--delta", "delta", "SyncCP: branch 2 denser by this [default: 0.3]."),
    ("--gate-layers", "gate_layers",
     "Comma-separated globs of the gated layers' names, e.g. 'layer*.conv2' [default: the "
     "ungrouped convs inside blocks]."),
    ("--prune-layers", "prune_layers",
     "Comma-separated globs of the pruned layers' names [default: the ungrouped block convs "
     "and projection shortcuts]."),
    ("--model", "model", "Encoder: resnet20, resnet18 (CIFAR style), resnet18-imagenet, "
     "resnet50-imagenet, or FILE.py:FACTORY, a function FACTORY(in_channels) returning your "
     "own nn.Module [default: resnet20]."),
    ("--width", "width", "Width multiplier [default: 1]."),
    ("--ssl", "ssl", "SSL method [default: simclr]."),
    ("--symmetric", "symmetric", "BYOL / MoCo: the symmetric loss, both views through both "
     "encoders (the trace records the four passes) [default: off]."),
    ("--data", "data", "Dataset NAME[:PATH]: fashion-mnist, mnist:DIR, cifar10:DIR, "
     "cifar100:DIR, folder:DIR, synthetic [default: fashion-mnist]."),
    ("--image-size", "image_size", "Training crop size in pixels [default: the dataset's; "
     "image folders are decoded at it, 64 pixels by default]."),
    ("--steps", "steps", "Optimizer steps [default: 200]."),
    ("--record-every", "record_every", "Record masks every K steps, and the last step "
     "[default: 10]."),
    ("--batch-size", "batch_size", "Images per branch [default: 64]."),
    ("--record-samples", "record_samples", "Record the gates of the first N images of each "
     "batch only: smaller traces of N-image steps [default: the whole batch]."),
    ("--finetune-epochs", "finetune_epochs", "Fine-tune encoder + classifier on a labelled "
     "fraction after training, for this many epochs [default: 0, off]."),
    ("--device", "device", "cpu or cuda [default: cpu]."),
    ("--seed", "seed", "Random seed [default: 0]."),
]


def _record_options(function):
    from workloads.run_config import RunConfig  # the recipe schema; loads no torch

    for flag, name, text in reversed(_RECORD_OPTIONS):
        kind = schema_option_type(RunConfig, name)
        if kind is bool:  # a flag: given means true, absent leaves the recipe's value
            function = click.option(flag, name, is_flag=True, default=None,
                                    help=text)(function)
            continue
        function = click.option(flag, name, type=kind, default=None, help=text)(function)
    return function


@main.command("record")
@_record_options
@click.option("--config", "recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="Run recipe YAML (workloads/recipes/); options given here override it.")
@out_dir_option("Run directory: trace/, checkpoint, log.csv, eval.json. Re-running the same "
                "command resumes an interrupted run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def record(recipe: Path | None, out_dir: Path, quiet: bool, **options: object) -> None:
    """Train a sparse contrastive model and record its real masks into a trace.

    Gate masks of every branch (exactly what the forward passes used: two, or four with
    --symmetric) and weight masks are
    written every K steps into OUT/trace, which `accelsim simulate OUT` replays. A killed run
    resumes from its last checkpoint when the same command is run again. At the end the encoder
    is evaluated (k-NN and linear-probe accuracy, fractions) and the FLOPs reduction is measured
    from the real masks (OUT/eval.json).

    Example: accelsim record --algo cdg --model resnet20 --ssl simclr --data fashion-mnist
    --steps 200 --out runs/cdg
    """
    from workloads.run_config import run_config  # the recipe's schema needs no torch

    try:  # the gating and pruning settings are checked by their torch-side configs
        config = run_config(recipe, {k: v for k, v in options.items() if v is not None})
        from workloads.train import summary_line, train
    except ImportError as error:
        raise InputError(f"recording needs PyTorch ({error.name} is missing): install "
                         "torch==2.13.0 first, then pip install -e .[workloads]",
                         field="record") from None
    result = train(config, out_dir, progress=not quiet)
    click.echo(summary_line(result))
    click.echo(f"trace: {out_dir / 'trace'}  (accelsim simulate {out_dir} --hw ...)")


def format_summary(summary: dict) -> str:
    """A short human summary of a summary.json mapping."""
    from accelsim.engine.energy import ENERGY_COMPONENTS
    total = summary["total"]
    gap = ""
    if total["flops_reduction"] != 1.0 or total["speedup"] != 1.0:
        gap = (f"\n  sparse speedup {total['speedup']:.3f}x vs FLOPs reduction "
               f"{total['flops_reduction']:.3f}x: speedup efficiency "
               f"{total['speedup_efficiency']:.3f}; "
               f"energy reduction {total['energy_reduction']:.3f}x")
        if "index" in summary:
            gap += f"; index reduction {summary['index']['index_reduction']:.2f}x"
    lines = [
        f"{summary['workload']} on {summary['hardware']}: {total['jobs']} jobs, "
        f"{total['macs_dense'] / 1e9:.3f} GMACs dense" + gap,
        f"  time   {total['cycles']:,.0f} cycles = {total['seconds'] * 1e3:.3f} ms "
        f"(compute {total['cycles_compute']:,.0f}, buffer-bound {total['cycles_buffer']:,.0f}, "
        f"DRAM-bound {total['cycles_dram']:,.0f}); utilization {total['utilization']:.1%}",
        f"  energy {total['energy_pj'] / 1e6:.3f} uJ: " + ", ".join(
            f"{c} {total[f'energy_{c}_pj'] / total['energy_pj']:.1%}"
            for c in ENERGY_COMPONENTS) if total["energy_pj"]
        else "  energy 0",
        f"  DRAM   {total['dram_bytes'] / 2**20:.2f} MiB; {total['effective_tflops']:.3f} "
        f"effective TFLOPS",
        f"  TFLOPS/W {total['tflops_per_watt']:.2f} of effective work, "
        f"{total['tflops_per_watt_dense_equivalent']:.2f} dense-equivalent, "
        f"{total['tflops_per_watt_on_chip']:.2f} effective on chip (without DRAM)",
    ]
    if summary.get("non_mac_modelled"):
        steps = max(1, summary.get("steps", 1))
        lines.append(
            f"  whole step with non-MAC work: {total['cycles_step']:,.0f} cycles = "
            f"{total['seconds_step'] * 1e3:.3f} ms, non-MAC {total['non_mac_share']:.1%} of it; "
            f"speedup {total['speedup_step']:.3f}x (MAC-only {total['speedup']:.3f}x), energy "
            f"reduction {total['energy_reduction_step']:.3f}x; stash "
            f"{total['stash_bytes'] / steps / 2**20:.1f} MiB per step")
        non_mac = total["energy_non_mac_pj"]
        if non_mac:
            lines.append(f"  non-MAC energy {non_mac / 1e6:.3f} uJ: " + ", ".join(
                f"{c} {total[f'energy_non_mac_{c}_pj'] / non_mac:.1%}"
                for c in ("vector", "buffer", "dram", "static")))
    else:
        lines.append("  non-MAC work not modelled (vector_unit.lanes is 0): MAC-only results")
    for phase, values in summary["per_phase"].items():
        lines.append(f"  {phase:3s}    {values['cycles']:>14,.0f} cycles "
                     f"{values['energy_pj'] / 1e6:>10.3f} uJ")
    return "\n".join(lines)


main.add_command(trace_group)
main.add_command(sweep_command)
main.add_command(report_command)
main.add_command(compare_command)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
