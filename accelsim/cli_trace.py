"""``accelsim trace ...``: make synthetic traces and summarise any trace (thin: parse, call, print).

Registered on the main group by ``accelsim.cli``; errors are library exceptions that the main
group turns into one-line messages with exit status 2.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import click

from accelsim.cli_options import network_shape_options, out_dir_option
from accelsim.errors import InputError
from accelsim.network import (
    BUILTIN_NETWORKS,
    MOMENTUM_SSL,
    OPTIMIZERS,
    SSL_METHODS,
    SYMMETRIC_BRANCHES,
)
from accelsim.trace.manifest import GATE_GRADIENTS
from accelsim.trace.writer import MIN_SAVING

_BUILTIN_ONLY = ("width", "in_channels", "image_size")


@click.group("trace")
def trace_group() -> None:
    """Make synthetic traces and inspect traces (masks, densities, index bits).

    A trace is a directory of per-step gate and weight masks (docs/trace-format.md); densities
    are fractions of kept bits (0..1), index sizes are in bits.

    Example: accelsim trace synth --network resnet20 --gate-sparsity 0.7 --out runs/synth
    """


# ---------------------------------------------------------------------------------------------
# accelsim trace synth
# ---------------------------------------------------------------------------------------------


def _network(ctx: click.Context, network: str, batch: int, width: float, in_channels: int,
             image_size: int | None) -> Any:
    from accelsim.network import builtin_network, read_topology_csv

    if network in BUILTIN_NETWORKS:
        return builtin_network(network, batch=batch, width=width, in_channels=in_channels,
                               image_size=image_size)
    path = Path(network)
    if path.suffix.lower() != ".csv" and not path.is_file():
        raise InputError(f"expected a built-in network ({', '.join(BUILTIN_NETWORKS)}) or a "
                         f"SCALE-Sim topology .csv file, got {network!r}", field="--network")
    for name in _BUILTIN_ONLY:
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            option = "--" + name.replace("_", "-")
            raise InputError(f"applies to built-in networks only, not to topology {network}",
                             field=option)
    return read_topology_csv(path, batch=batch)


def _directory_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@trace_group.command("synth")
@click.option("--network", required=True, metavar="NAME|FILE.csv",
              help="A built-in network (resnet20, resnet18, resnet18-imagenet, "
              "resnet50-imagenet) or a SCALE-Sim topology CSV.")
@out_dir_option("Trace directory to create (absent or empty; see --overwrite).")
@click.option("--steps", type=click.IntRange(min=1), default=2, show_default=True,
              help="Recorded steps, numbered 0, 1, ...")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images per branch (N of every mask).")
@network_shape_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of every random draw; same seed and options give identical bytes.")
@click.option("--gate-sparsity", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of gate bits that are 0, exact per layer, branch and step "
              "[default: no gate masks].")
@click.option("--gate-groups", type=click.IntRange(min=1), default=4, show_default=True,
              help="G, CDG gating groups (1: no base path).")
@click.option("--gate-group-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="s, output channels per gate bit (1: CDG; s > 1: SCDG s x 1 x 1 groups).")
@click.option("--overlap", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of output chunks whose base chunk is the same in both branches "
              "(0: CDG disjoint, 1: CGNet-style shared).")
@click.option("--spatial-correlation", type=click.FloatRange(min=0), default=0.0,
              show_default=True,
              help="Gate correlation length in output pixels (gaussian sigma; 0: independent).")
@click.option("--gate-gradient", type=click.Choice(GATE_GRADIENTS),
              default="straight_through", show_default=True,
              help="How training took the gate's gradient: straight_through needs the "
              "conditional output everywhere (FW cannot skip it); masked only where open.")
@click.option("--channel-block", type=click.IntRange(min=1), default=1, show_default=True,
              help="Gate bits equal over blocks of B consecutive stored channels (1: "
              "independent; a CDG trace with B = 8 has SCDG 8x1x1's gates).")
@click.option("--weight-sparsity", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of weights pruned in branch 1 [default: no weight masks, unless "
              "--weight-pattern is nm:N:M].")
@click.option("--weight-pattern", default="element", show_default=True,
              metavar="element|nm:N:M|nmt:N:M|block:BOxBI",
              help="Weight sparsity structure; nm:N:M implies sparsity 1 - N/M; nmt:N:M is "
              "transposable (also N of every M output channels).")
@click.option("--weight-delta", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True,
              help="Branch 2 is denser by this (sparsity S - delta, a superset of branch 1).")
@click.option("--weight-update-every", type=click.IntRange(min=0), default=0,
              show_default=True,
              help="Re-draw weight masks every K steps (0: once; other steps store references).")
@click.option("--gate-layers", default="", metavar="GLOBS",
              help="Comma-separated globs of the names of the layers that get gates "
              "[default: built-in nets the block convs, topologies every layer but the first "
              "and the fully connected ones].")
@click.option("--prune-layers", default="", metavar="GLOBS",
              help="Comma-separated globs of the names of the layers that get weight masks "
              "[default: built-in nets every conv but the stem, topologies as for gates].")
@click.option("--branches", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Contrastive branches (augmented views).")
@click.option("--ssl", type=click.Choice(SSL_METHODS), default="simclr", show_default=True,
              help="The SSL method the trace stands for: byol and moco make branch 2 a "
              "momentum encoder (forward only, updated from branch 1 every step).")
@click.option("--symmetric", is_flag=True,
              help="With --ssl byol or moco: the symmetric loss, recorded as four branches (3 "
              "and 4: the online and target encoders on the other view).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True,
              help="The optimizer the trace stands for (its step is non-MAC work).")
@click.option("--compression", type=click.IntRange(0, 9), default=6, show_default=True,
              help="zlib level of the stored masks; 0 stores the packed bits uncompressed "
                   "(1 bit per mask element: larger files, fastest replay).")
@click.option("--min-saving", type=click.FloatRange(0, 1), default=MIN_SAVING, show_default=True,
              help="Store a mask compressed only when zlib saves at least this share of its "
                   "bytes (random gates save ~10 % and replay 5x slower compressed).")
@click.option("--overwrite", is_flag=True, help="Replace a trace already in --out.")
@click.pass_context
def synth(ctx: click.Context, network: str, out_dir: Path, steps: int, batch: int, width: float,
          in_channels: int, image_size: int | None, seed: int, gate_sparsity: float | None,
          gate_groups: int, gate_group_size: int, overlap: float, spatial_correlation: float,
          gate_gradient: str, channel_block: int, weight_sparsity: float | None,
          weight_pattern: str, weight_delta: float, weight_update_every: int,
          gate_layers: str, prune_layers: str, branches: int,
          ssl: str, symmetric: bool, optimizer: str, compression: int, min_saving: float,
          overwrite: bool) -> None:
    """Write a synthetic trace: random gate and weight masks with exact sparsity.

    Gated layers: residual-block convs of a built-in net, every layer but the first of a
    topology. Pruned layers: every conv but the stem (topology: every layer but the first).
    Sparsities are fractions of 0 bits (0..1), --spatial-correlation is in output pixels, the
    trace size printed is in MiB. The rules are in docs/synthetic-traces.md.

    Example: accelsim trace synth --network resnet18 --batch 16 --gate-sparsity 0.7
    --gate-group-size 8 --weight-pattern nm:2:4 --out runs/scdg-nm
    """
    from accelsim.layer_patterns import parse_patterns
    from accelsim.trace.synth import SynthConfig, synthesize, trace_layers

    config = SynthConfig(steps=steps, seed=seed, branches=branches, gate_sparsity=gate_sparsity,
                         gate_groups=gate_groups, gate_group_size=gate_group_size,
                         overlap=overlap, spatial_correlation=spatial_correlation,
                         channel_block=channel_block, gate_gradient=gate_gradient,
                         weight_sparsity=weight_sparsity,
                         weight_pattern=weight_pattern, weight_delta=weight_delta,
                         weight_update_every=weight_update_every, ssl=ssl, symmetric=symmetric,
                         optimizer=optimizer, gate_layers=parse_patterns(gate_layers),
                         prune_layers=parse_patterns(prune_layers))
    net = _network(ctx, network, batch, width, in_channels, image_size)
    if not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise InputError("directory is not empty (pass --overwrite to replace the trace in it)",
                         path=str(out_dir))
    layers = trace_layers(net, config)
    synthesize(net, out_dir, config, overwrite=overwrite, compression_level=compression,
               min_saving=min_saving)
    gated = sum(item.gate is not None for item in layers)
    pruned = sum(item.weight is not None for item in layers)
    click.echo(f"wrote {out_dir}: {steps} steps x {config.recorded_branches} branches, "
               f"{len(layers)} layers of "
               f"{net.name} ({gated} gated, {pruned} pruned), "
               f"{_directory_bytes(out_dir) / 2**20:.2f} MiB")


# ---------------------------------------------------------------------------------------------
# accelsim trace info
# ---------------------------------------------------------------------------------------------


def _ratio(reference: int, bits: int | None) -> float | None:
    """``reference / bits``; None when ``bits`` is None (not representable) or 0."""
    return None if not bits else reference / bits


def _index_params(item: Any, kind: str, run_bits: int) -> Any:
    """IndexParams of one mask of a trace layer (element-level masks)."""
    from accelsim.sparsity import IndexParams
    from accelsim.trace.synth import WeightPattern

    if kind == "gate":
        return IndexParams(run_bits=run_bits, group_shape=(1, item.gate.group_size, 1, 1))
    if kind == "select":  # DGC's (N, heads, Cin) selection: element level
        return IndexParams(run_bits=run_bits)
    try:
        pattern = WeightPattern.parse(item.weight.pattern)
    except InputError:  # a structure accelsim does not interpret: the generic formats only
        return IndexParams(run_bits=run_bits)
    layer = item.layer
    if pattern.kind in ("nm", "nmt"):
        return IndexParams(run_bits=run_bits, nm=(pattern.n, pattern.m), nm_axis=1)
    if pattern.kind == "block":
        return IndexParams(run_bits=run_bits,
                           group_shape=(pattern.block_out, pattern.block_in, layer.kh, layer.kw))
    return IndexParams(run_bits=run_bits)


def _sum_bits(rows: list[dict[str, Any]], formats: tuple[str, ...]) -> dict[str, Any]:
    elements = sum(row["elements"] for row in rows)
    bits: dict[str, int | None] = {}
    for fmt in formats:
        values = [row["bits"][fmt] for row in rows]
        bits[fmt] = None if not rows or any(v is None for v in values) else sum(values)
    return {"masks": len(rows), "elements": elements, "bits": bits,
            "reduction": {fmt: _ratio(elements, bits[fmt]) for fmt in formats}}


def index_report(reader: Any, step: int, run_bits: int = 4) -> dict[str, Any]:
    """Index bits per format of every mask of ``step`` (element level), totals and reductions.

    Gate masks with group size s are expanded to ``(N, Cout, Ho, Wo)`` and scored with
    group_shape ``(1, s, 1, 1)``; weight masks get ``nm`` from ``nm:N:M`` and group_shape
    ``(BO, BI, kh, kw)`` from ``block:BOxBI``. Reductions are element-level bitmap bits / bits.
    ``bits["best"]`` is the fewest bits over the formats that represent the mask (named by
    ``best_format``); a total is None where some mask cannot be represented in that format.
    """
    import numpy as np

    from accelsim.sparsity import FORMATS, all_index_bits, expand_groups

    columns = (*FORMATS, "best")
    rows: list[dict[str, Any]] = []
    selects = (reader.step_masks(step).selects
               if any(item.select is not None for item in reader.layers) else {})
    for item in reader.layers:
        for kind in ("gate", "weight", "select"):
            if getattr(item, kind) is None:
                continue
            params = _index_params(item, kind, run_bits)
            for branch in range(1, reader.branches + 1):
                if kind == "gate":
                    mask = expand_groups(reader.gate(step, item.name, branch),
                                         (1, item.gate.group_size, 1, 1))
                elif kind == "select":
                    mask = selects[(item.name, branch)]
                else:
                    mask = reader.weight(step, item.name, branch)
                bits: dict[str, int | None] = dict(all_index_bits(np.asarray(mask), params))
                candidates = {fmt: b for fmt, b in bits.items() if b is not None}
                best = min(candidates, key=candidates.__getitem__)  # ties: FORMATS order
                bits["best"] = bits[best]
                elements = int(mask.size)
                rows.append({"layer": item.name, "kind": kind, "branch": branch,
                             "elements": elements, "density": float(np.count_nonzero(mask))
                             / elements, "bits": bits, "best_format": best,
                             "reduction": {fmt: _ratio(elements, bits[fmt]) for fmt in columns}})
    totals = {kind: _sum_bits([r for r in rows if r["kind"] == kind], columns)
              for kind in ("gate", "weight", "select")}
    totals["all"] = _sum_bits(rows, columns)
    return {"step": step, "run_bits": run_bits, "formats": list(FORMATS), "masks": rows,
            "totals": totals}


def trace_info(path: Path, step: int | None = None, run_bits: int = 4) -> dict[str, Any]:
    """Everything ``accelsim trace info`` prints, as one JSON-ready dict."""
    from accelsim.trace import open_trace, resolve_trace_dir

    path = resolve_trace_dir(path)  # a run directory of `accelsim record`: its trace/
    reader = open_trace(path)
    summary = reader.summary()
    layers = []
    for item in reader.layers:
        entry = {key: getattr(item.layer, key) for key in
                 ("name", "kind", "role", "cin", "cout", "kh", "kw", "stride", "padding",
                  "groups", "h_in", "w_in", "h_out", "w_out", "batch")}
        entry["post_ops"] = list(item.layer.post_ops)
        entry["gate"] = None if item.gate is None else {
            "group_size": item.gate.group_size, "gating_groups": item.gate.gating_groups,
            "base_chunks": [list(c) for c in item.gate.base_chunks],
            "gradient": item.gate.gradient}
        entry["weight"] = None if item.weight is None else {"pattern": item.weight.pattern}
        entry["select"] = None if item.select is None else {"heads": item.select.heads}
        entry["density_mean"] = summary["density"][item.name]
        layers.append(entry)
    if step is None and reader.steps:
        step = reader.steps[0]
    index = None if step is None else index_report(reader, step, run_bits)
    manifest = reader.manifest
    return {"path": str(path), "version": manifest.version, "created_by": manifest.created_by,
            "producer": manifest.producer, "branches": reader.branches,
            "steps": {"count": summary["steps"], "first": summary["first_step"],
                      "last": summary["last_step"]},
            "loss_mean": summary["loss_mean"], "layers": layers, "index": index}


POST_OP_SHORT = {"batchnorm": "bn", "relu": "relu", "add": "add", "maxpool": "maxpool",
                 "pool": "pool", "fanout": "fan"}


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _fmt_density(per_branch: dict[str, float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.3f}" for v in per_branch.values())


def _fmt_bits(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def format_info(info: dict[str, Any]) -> str:
    """The text report of :func:`trace_info`."""
    lines = [f"trace {info['path']} (format {info['version']}, {info['created_by']})"]
    producer = info["producer"]
    flat = [f"{k}={_scalar(v)}" for k, v in producer.items() if not isinstance(v, dict)]
    lines.append("  producer: " + (", ".join(flat) if flat else "(empty)"))
    for key, value in producer.items():
        if isinstance(value, dict):
            text = f"{key}: " + ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
            lines.append(textwrap.fill(text, width=100, initial_indent="    ",
                                       subsequent_indent="      ", break_on_hyphens=False))
    steps = info["steps"]
    span = f" (first {steps['first']}, last {steps['last']})" if steps["count"] else ""
    loss = "n/a" if info["loss_mean"] is None else f"{info['loss_mean']:.4g}"
    roles = ""
    if str(producer.get("ssl", "")).lower() in MOMENTUM_SSL:
        roles = (" (1 online, 2 target; 3 online, 4 target on the other view: a symmetric "
                 "loss)" if info["branches"] == SYMMETRIC_BRANCHES else " (1 online, 2 target)")
    lines.append(f"  branches {info['branches']}{roles}; steps {steps['count']}{span}; "
                 f"mean loss {loss}")
    lines.append("layers (Cin->Cout, kernel, stride, output Ho x Wo, g = conv groups, fc = linear; "
                 "then: the non-MAC ops")
    lines.append("        on the output: bn add relu maxpool (3x3/2) pool (global average) "
                 "fan(out);")
    lines.append("        gate s = channels per bit, G = gating groups, dgc h = heads selecting "
                 "input channels;")
    lines.append("        mean density = fraction of 1 bits over all steps, branch 1/2/...):")
    width = max(len("total weight"), *(len(layer["name"]) for layer in info["layers"]))
    for layer in info["layers"]:
        if layer["kind"] == "linear":
            geometry = f"{layer['cin']}->{layer['cout']} fc"
        else:
            geometry = (f"{layer['cin']}->{layer['cout']} k{layer['kh']}x{layer['kw']} "
                        f"s{layer['stride']} {layer['h_out']}x{layer['w_out']}" +
                        (f" g{layer['groups']}" if layer["groups"] > 1 else ""))
        gate = "-" if layer["gate"] is None else \
            f"s={layer['gate']['group_size']} G={layer['gate']['gating_groups']}" + \
            (" masked" if layer["gate"]["gradient"] == "masked" else "")
        if layer.get("select") is not None:
            gate = f"dgc h={layer['select']['heads']}"
        weight = "-" if layer["weight"] is None else layer["weight"]["pattern"]
        density = "  ".join(f"{kind} {_fmt_density(per_branch)}"
                            for kind, per_branch in layer["density_mean"].items())
        post = "+".join(POST_OP_SHORT.get(op, op) for op in layer["post_ops"]) or "-"
        lines.append(f"  {layer['name']:<{width}}  {geometry:<26} then {post:<16} "
                     f"gate {gate:<9} weight {weight:<12} {density}".rstrip())
    index = info["index"]
    if index is None:
        lines.append("index bits: no steps recorded")
        return "\n".join(lines)
    formats = [*index["formats"], "best"]
    lines.append(f"index bits at step {index['step']} (element-level masks, rle run "
                 f"{index['run_bits']} bits; '-' = format cannot represent the mask; best = fewest "
                 f"bits per mask):")
    cols = [max(len(fmt), 12) for fmt in formats]
    head = "  ".join(f"{fmt:>{w}}" for fmt, w in zip(formats, cols, strict=True))
    lines.append(f"  {'layer':<{width}}  {'kind':<6} br  {'elements':>12}  {head}")
    for row in index["masks"]:
        cells = "  ".join(f"{_fmt_bits(row['bits'][fmt]):>{w}}"
                          for fmt, w in zip(formats, cols, strict=True))
        lines.append(f"  {row['layer']:<{width}}  {row['kind']:<6} {row['branch']:>2}  "
                     f"{row['elements']:>12,}  {cells}")
    for name, total in index["totals"].items():
        if not total["masks"]:
            continue
        label = f"total {name}"
        cells = "  ".join(f"{_fmt_bits(total['bits'][fmt]):>{w}}"
                          for fmt, w in zip(formats, cols, strict=True))
        lines.append(f"  {label:<{width}}  {'':<6}     {total['elements']:>12,}  {cells}")
        ratios = "  ".join(f"{_fmt_ratio(total['reduction'][fmt]):>{w}}"
                           for fmt, w in zip(formats, cols, strict=True))
        lines.append(f"  {'  reduction':<{width}}  {'':<6}     {'vs bitmap':>12}  {ratios}")
    return "\n".join(lines)


@trace_group.command("info")
@click.argument("trace_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--step", type=click.IntRange(min=0), default=None,
              help="Step whose masks are decoded for index bits [default: the first].")
@click.option("--run-bits", type=click.IntRange(min=1), default=4, show_default=True,
              help="Width of an rle run field (bits).")
def info(trace_dir: Path, as_json: bool, step: int | None, run_bits: int) -> None:
    """Summarise a trace: producer, layers, mean densities and index bits per format.

    DIR is a trace directory or a run directory of `accelsim record` (its trace/).

    Densities (fraction of kept bits, 0..1) come from the step statistics without decoding;
    index sizes (bits) decode the masks of one step, per layer x kind x branch, with totals and
    the reduction vs the element-level bitmap (bitmap bits / format bits).

    Example: accelsim trace info runs/synth --step 1 --json
    """
    result = trace_info(trace_dir, step, run_bits)
    if as_json:
        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        click.echo(format_info(result))
