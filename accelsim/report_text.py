"""The report's sentences: the workload, the answer per hardware, why the gap, beyond the MACs.

Pure functions over the tables :mod:`accelsim.report` builds (the scheme table, the gap table)
and the runs' summaries; they return Markdown strings (``**bold**``, backticked code) that
:class:`accelsim.report_page.Page` renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from accelsim.units import energy_text

# Causes of lost cycles as the sentences name them (columns of analysis.gap_decomposition):
# (what it costs when positive, what it saves when negative).
CAUSES = {
    "estimator_cycles": ("the forward pass the straight-through gate gradient needs dense", ""),
    "unexploited_cycles": ("sparsity this hardware does not exploit", ""),
    "lockstep_cycles": ("idle lanes of lock-step units", ""),
    "stage_cycles": ("queues waiting for the busiest at each operand-stage chunk", ""),
    "imbalance_cycles": ("load imbalance beyond the dense mapping's",
                         "work packed better than the dense tiles"),
    "decoder_cycles": ("decoder stalls", ""),
    "memory_cycles": ("memory-bound time beyond the dense run's",
                      "less memory-bound time than the dense run"),
}
# Not a cause of the hardware's: where the skipped MACs sit among layers the dense mapping
# runs well or poorly. Reported apart, never as the largest cause.
PLACEMENT = ("skipped MACs falling in layers the dense mapping runs well (they save less time)",
             "skipped MACs falling in layers the dense mapping runs poorly (they save more "
             "time)")
WORKLOAD_KEYS = ("model", "network", "width", "ssl", "symmetric", "dataset", "image_size",
                 "steps", "batch_size", "record_samples")
SSL_NAMES = {"simclr": "SimCLR", "byol": "BYOL", "moco": "MoCo v2", "mocov2": "MoCo v2"}
MODEL_NAMES = {"resnet20": "ResNet-20", "resnet18": "ResNet-18",
               "resnet18-imagenet": "ResNet-18 (ImageNet style)",
               "resnet50-imagenet": "ResNet-50 (ImageNet style)"}
DATA_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
              "imagenet100": "ImageNet-100", "synthetic": "synthetic images"}


def _missing(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def less_or_more(reduction: float) -> str:
    """An energy (or time) reduction as words: ``1.25x less`` or, below 1, ``1.22x more``."""
    if _missing(reduction) or reduction <= 0:
        return "n/a"
    return f"{reduction:.2f}x less" if reduction >= 1 else f"{1 / reduction:.2f}x more"


def _settings(producer: Mapping[str, Any]) -> dict[str, Any]:
    """A trace producer's parameters in one mapping: its ``config`` (the training recipe),
    overridden by its own top-level keys; ``dataset`` falls back to the recipe's ``data``."""
    config = producer.get("config", {}) if isinstance(producer.get("config"), dict) else {}
    merged = {**config, **producer}
    if "dataset" not in merged and "data" in merged:
        merged["dataset"] = merged["data"]
    return merged


def workload_key(producer: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What makes two recorded runs the same workload (model, SSL method, data, steps, batch);
    numbers as floats, so width 1 and 1.0 are one workload."""
    if not producer:
        return ()
    merged = {"symmetric": False, **_settings(producer)}  # older producers: asymmetric
    return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                 for v in (merged.get(k) for k in WORKLOAD_KEYS))


def workload_sentence(producer: Mapping[str, Any], replayed_steps: int) -> str:
    """One sentence naming a recorded workload; a synthetic trace's generator and network."""
    merged = _settings(producer)
    if str(producer.get("algorithm", "")).lower() == "synthetic":
        network = merged.get("network", "a network")
        return (f"Synthetic trace of {network} (`accelsim trace synth`), no training; "
                f"{replayed_steps} step(s) replayed.")
    model = MODEL_NAMES.get(str(merged.get("model")), str(merged.get("model", "?")))
    width = merged.get("width")
    if width not in (None, 1, 1.0):
        model += f" (width x{width:g})"
    data = DATA_NAMES.get(str(merged.get("dataset")), str(merged.get("dataset", "?")))
    size = merged.get("image_size")
    if size:
        data += f" at {size}x{size}"
    ssl = SSL_NAMES.get(str(merged.get("ssl")), str(merged.get("ssl", "?")))
    if merged.get("symmetric") is True:
        ssl += " (symmetric loss: both views through both encoders)"
    samples = merged.get("record_samples")
    replayed = (f"; the trace holds the masks of the first {samples} images of each batch, so "
                f"a replayed step is a step of {samples} images, which pays the optimizer step "
                f"and the weight fetches once per {samples} images instead of once per batch "
                f"(whole-step figures overstate them)") if samples else ""
    return (f"{model} trained with {ssl} on {data} for {merged.get('steps', '?')} steps of "
            f"{merged.get('batch_size', '?')} images per branch, optimizer "
            f"{merged.get('optimizer', '?')}; {replayed_steps} recorded step(s) replayed per "
            f"run{replayed}.")


def scheme_settings(producer: Mapping[str, Any] | None) -> str:
    """The sparsity settings a scheme was trained with (G, group size, targets, pattern)."""
    if not producer:
        return "no masks"
    merged = _settings(producer)
    algo = str(merged.get("algo", merged.get("algorithm", ""))).lower()
    parts = []
    if algo in ("cdg", "scdg", "cgnet"):
        parts.append(f"G = {merged.get('gate_groups', '?')} gating groups")
        if merged.get("gate_group_size"):
            parts.append(f"{merged['gate_group_size']}x1x1 gate groups")
        if merged.get("tau_target") is not None:
            parts.append(f"tau target {merged['tau_target']:g}")
        parts.append(f"gate gradient {merged.get('gate_gradient', 'straight_through')}")
    elif algo == "fbs":
        parts.append(f"keeps {merged.get('fbs_density', 0.5):.0%} of each gated layer's "
                     "channels per sample (k-winners-take-all)")
    elif algo == "dgc":
        parts.append(f"{merged.get('dgc_heads', 4)} heads per gated layer, each reading "
                     f"{merged.get('dgc_density', 0.5):.0%} of its input channels per sample "
                     "(dynamic group convolution)")
    elif algo == "synccp":
        pattern = str(merged.get("weight_pattern", "element"))
        parts.append(f"pattern `{pattern}`")
        if not pattern.startswith(("nm:", "nmt:")):
            final, delta = merged.get("final_sparsity"), merged.get("delta", 0.0)
            if final is not None:
                parts.append(f"sparsity {final:.0%} (branch 2 {max(0.0, final - delta):.0%})")
            parts.append(f"{merged.get('threshold', 'global')} threshold")
        elif merged.get("delta"):
            parts.append(f"branch 2 denser by delta {merged['delta']:g}")
    elif algo == "synthetic":
        if merged.get("gate_sparsity"):
            parts.append(f"gate sparsity {merged['gate_sparsity']:g}, G = "
                         f"{merged.get('gate_groups', '?')}, gate groups of "
                         f"{merged.get('gate_group_size') or 1} channel(s)")
        pattern = str(merged.get("weight_pattern") or "element")
        if merged.get("weight_sparsity") or pattern != "element":
            parts.append(f"weight pattern `{pattern}`" + (
                f", weight sparsity {merged['weight_sparsity']:g}"
                if merged.get("weight_sparsity") else ""))
    return ", ".join(parts) or "no masks"


def accuracy_delta(table: pd.DataFrame, key: str) -> pd.Series:
    """Per row: ``key`` accuracy minus the mean of the dense rows of the same workload
    (percentage points), NaN where either is missing."""
    if key not in table.columns:
        return pd.Series(float("nan"), index=table.index)
    trained = table[table["masks"] == "none"].drop_duplicates(["workload", "seed", key])
    dense = trained.groupby("workload")[key].mean()  # one value per trained run
    baseline = table["workload"].map(dense)
    return (table[key] - baseline) * 100.0


ACCURACY_NAMES = {"knn_accuracy": "k-NN", "linear_accuracy": "linear-probe",
                  "finetune_accuracy": "fine-tuned"}


def _seed_spreads(rows: pd.DataFrame, key: str) -> tuple[dict[str, float], pd.Series]:
    """Per scheme label, the spread (max - min, percentage points) of ``key`` over the runs
    trained with several seeds, and how many seeds each scheme has."""
    # One accuracy per trained run: the same scheme, settings and workload, told apart by seed.
    seeds = rows.groupby(["workload", "label", "settings", "seed"])[key].first()
    counts = seeds.groupby(level=[0, 1, 2]).size()
    spreads = {group[1]: 100 * float(seeds[group].max() - seeds[group].min())
               for group in counts.index if counts[group] > 1}
    return spreads, counts.droplevel([0, 2])


def accuracy_caveat(table: pd.DataFrame) -> str:
    """What the accuracy differences can and cannot show: seeds, steps, the seed-to-seed
    spread where a scheme was trained with several seeds, test-set noise."""
    key = next((k for k in ("knn_accuracy", "linear_accuracy") if k in table.columns
                and table[k].notna().any()), None)
    if key is None:
        return ""
    rows = table.dropna(subset=[key]).fillna({"seed": -1})
    spreads, counts = _seed_spreads(rows, key)
    tests = rows["eval_test_samples"].dropna() if "eval_test_samples" in rows.columns \
        else pd.Series(dtype=float)
    noise = ""
    if len(tests) and float(tests.min()) > 0:
        p = float(rows[key].mean())
        half = 1.96 * math.sqrt(2 * p * (1 - p) / float(tests.min())) * 100
        noise = (f" The test set alone ({int(tests.min())} images) makes a difference of two "
                 f"accuracies uncertain by up to ±{half:.1f} pp (95 %; less, as both models "
                 f"are scored on the same images).")
    steps = rows["train_steps"].dropna() if "train_steps" in rows.columns else pd.Series()
    trained = f" after {int(steps.max())} training steps" if len(steps) else ""
    delta = key.replace("_accuracy", "_delta")
    compared = delta in table.columns and bool(
        table.loc[table["masks"] != "none", delta].notna().any())
    head = ("Accuracy is shown as the change vs the dense run of the same workload (the mean "
            f"of its dense runs), in percentage points{trained}." if compared else
            f"Accuracy is shown as measured{trained}: no dense run of the same workload to "
            f"compare with.")
    if spreads:
        measured = []
        for other, name in ACCURACY_NAMES.items():
            if other not in table.columns or not table[other].notna().any():
                continue
            found, seen = _seed_spreads(table.dropna(subset=[other]).fillna({"seed": -1}),
                                        other)
            if found:
                measured.append(f"{name} " + ", ".join(
                    f"{label} {spread:.1f} pp over {seen[label]} seeds"
                    for label, spread in found.items()))
        single = (" The other schemes have one seed each, so a difference within about that "
                  "spread is not evidence of an accuracy cost."
                  if (counts == 1).any() else "")
        return (f"{head} Measured seed-to-seed spread of accuracy: {'; '.join(measured)}."
                f"{single}" + noise)
    return (f"{head} One seed per scheme: the seed-to-seed spread is not measured, so "
            f"differences of a few points are not evidence.{noise} Train more seeds "
            f"(`--seed`) before reading an accuracy cost from them.")


def headline(part: pd.DataFrame, gaps: pd.DataFrame, dense_utilization: float) -> list[str]:
    """The answer for one hardware and workload (``part``: their rows of the scheme table;
    ``gaps``: the gap table): fastest, least energy, smallest index, structured vs
    unstructured, what the hardware does not exploit, accuracy vs dense."""
    lines: list[str] = []
    if not _missing(dense_utilization):
        lines.append(f"The dense MAC jobs keep {dense_utilization:.0%} of the array's peak MACs "
                     f"busy: losses of the dense mapping itself (partial tiles, pipeline fill, "
                     f"memory) are in every scheme's ideal and are not blamed on sparsity.")
    part = part[part["masks"] != "none"]
    if part.empty:
        return lines
    step = not part["speedup_step"].isna().all()
    best = part.loc[part["speedup"].idxmax()]
    if best["speedup"] < 1.005:
        text = (f"No scheme is faster than dense on the MACs (best: **{best['scheme']}**, "
                f"{best['speedup']:.2f}x)")
    else:
        text = (f"Fastest on the MACs: **{best['scheme']}**, {best['speedup']:.2f}x for a FLOPs "
                f"reduction of {best['flops_reduction']:.2f}x")
    if step:
        whole = part.loc[part["speedup_step"].idxmax()]
        text += (f"; over the whole step (non-MAC work included) **{whole['scheme']}**, "
                 f"{whole['speedup_step']:.2f}x")
    lines.append(text + ".")
    energy = "energy_reduction_step" if step else "energy_reduction"
    least = part.loc[part[energy].idxmax()]
    scope = " over the whole step" if step else " on the MACs"
    if least[energy] >= 1.0:
        lines.append(f"Least energy: **{least['scheme']}**, {less_or_more(least[energy])} "
                     f"than dense{scope}.")
    else:
        lines.append(f"Every scheme spends more energy than dense{scope}; the least: "
                     f"**{least['scheme']}**, {less_or_more(least[energy])}.")
    indexed = part[part["index_bits_per_step"] > 0]
    if len(indexed):
        small = indexed.loc[indexed["index_bits_per_step"].idxmin()]
        lead = "Smallest index storage" if len(indexed) > 1 else "Only scheme storing an index"
        ratio = float(small["index_reduction"])
        lines.append(f"{lead}: **{small['scheme']}**, "
                     f"{bits_text(small['index_bits_per_step'])} per step "
                     f"({less_or_more(ratio).replace('less', 'smaller').replace('more', 'larger')}"
                     f" than its masks as element bitmaps).")
    pairs = []
    for masks in ("gates", "weights"):
        of = part[part["masks"] == masks]
        loose, tight = of[of["structure"] == "unstructured"], of[of["structure"] == "structured"]
        if len(loose) and len(tight):
            pairs.append(", ".join(f"{r['scheme']} {r['speedup']:.2f}x"
                                   for _, r in tight.iterrows())
                         + " against " + ", ".join(f"{r['scheme']} {r['speedup']:.2f}x"
                                                   for _, r in loose.iterrows()))
    if pairs:
        lines.append("Structured against unstructured (MAC speedup): " + "; ".join(pairs) + ".")
    unexploited = []
    for _, row in part.iterrows():
        rows = gaps[(gaps["run"] == row["run"]) & (gaps["phase"] != "all")]
        phases = [str(p).upper() for p, share in zip(rows["phase"], rows["unexploited_share"],
                                                      strict=True)
                  if not _missing(share) and share > 0.5]
        if phases:
            unexploited.append(f"{row['scheme']} ({', '.join(phases)})")
    if unexploited:
        lines.append("Not exploited by this hardware (it computes these phases dense): "
                     + ", ".join(unexploited) + ".")
    for key, name in (("knn_delta", "k-NN"), ("linear_delta", "linear-probe")):
        deltas = [f"{r['scheme']} {r[key]:+.1f} pp" for _, r in part.iterrows()
                  if not _missing(r.get(key))]
        if deltas:
            lines.append(f"{name} accuracy vs dense: " + ", ".join(deltas) + ".")
            break
    return lines


def bits_text(bits: float) -> str:
    """Index storage in bits as text in bytes: ``12.3 KiB``, ``4.56 MiB``."""
    size = float(bits) / 8
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} GiB"  # unreachable


def why_the_gap(gaps: pd.DataFrame) -> list[str]:
    """One line per scheme from its rows of the gap table (cycles in millions)."""
    lines = []
    for _, row in gaps[gaps["phase"] == "all"].iterrows():
        lost, cycles = float(row["lost_cycles"]), float(row["cycles"])
        head = (f"**{row['scheme']}**: speedup {row['speedup']:.2f}x for a FLOPs reduction of "
                f"{row['flops_reduction']:.2f}x ({row['speedup'] / row['flops_reduction']:.0%} "
                f"of it).")
        if abs(lost) <= 0.005 * cycles:
            lines.append(f"{head} No cycles are lost: the hardware turns the skipped MACs into "
                         f"time saved.")
            continue
        costs = sorted(((float(row[c]), cost) for c, (cost, _) in CAUSES.items()
                        if float(row[c]) > 0.005 * cycles), reverse=True)
        savings = sorted(((float(row[c]), saving) for c, (_, saving) in CAUSES.items()
                          if saving and float(row[c]) < -0.005 * cycles))
        gross = ", ".join(f"{text} {value / 1e6:.2f} M" for value, text in costs)
        saved = ", ".join(f"{text} {-value / 1e6:.2f} M" for value, text in savings)
        placement = float(row["placement_cycles"])
        where = ""
        if abs(placement) > 0.005 * cycles:
            what = PLACEMENT[0] if placement > 0 else PLACEMENT[1]
            sign = "+" if placement > 0 else "-"
            where = f" Beside the hardware's causes, {what}: {sign}{abs(placement) / 1e6:.2f} M."
        phases = gaps[(gaps["scheme"] == row["scheme"]) & (gaps["phase"] != "all")]
        tail = ""
        if len(phases) and lost > 0:
            worst = phases.loc[phases["lost_cycles"].idxmax()]
            tail = (f" Most is lost in {str(worst['phase']).upper()} "
                    f"({float(worst['lost_cycles']) / lost:.0%}).")
        largest = costs[0][1] if costs else "none"
        lines.append(f"{head} {lost / 1e6:.2f} M of its {cycles / 1e6:.2f} M cycles "
                     f"({lost / cycles:.0%}) are beyond the ideal. Largest cause: {largest}. "
                     f"Costs: {gross or 'none'}" + (f"; savings: {saved}" if saved else "")
                     + f".{where}{tail}")
    return lines


def beyond_the_macs(schemes: pd.DataFrame) -> list[str]:
    """One line per sparse scheme with whole-step figures: how far its non-MAC work pulls the
    MAC-only speedup down."""
    lines = []
    for _, row in schemes.iterrows():
        if row["masks"] == "none" or _missing(row["speedup_step"]):
            continue
        extra = float(row["extra_non_mac_share"])
        what = ("the gate's arithmetic and stored Y_c, waits for streamed work"
                if "gate" in str(row["masks"]) else "waits for streamed work")
        own = ""
        if extra >= 0.005:
            own = (f", including {extra:.0%} of the step in work the dense step does not have "
                   f"({what})")
        elif extra <= -0.005:  # vector_unit.sparse_updates: the optimizer skips pruned weights
            own = (f", {-extra:.0%} of the step less than the dense step's non-MAC work (net "
                   f"of the optimizer's sparse updates)")
        lines.append(f"**{row['scheme']}**: {float(row['speedup']):.2f}x on the MACs, "
                     f"{float(row['speedup_step']):.2f}x for the whole step: non-MAC work is "
                     f"{float(row['non_mac_share']):.0%} of its sparse step{own}; energy "
                     f"{less_or_more(float(row['energy_reduction_step']))} than dense for the "
                     f"whole step.")
    return lines


def run_sentence(total: Mapping[str, Any], steps: int) -> str:
    """A run's totals in one sentence: speedup, FLOPs reduction, time and energy per step."""
    per = max(1, steps)
    seconds = float(total.get("seconds_step", total.get("seconds", 0.0))) / per
    energy = float(total.get("energy_step_pj", total.get("energy_pj", 0.0))) / per
    energy_words = less_or_more(total["energy_reduction"])
    return (f"Speedup {total['speedup']:.2f}x for a FLOPs reduction of "
            f"{total['flops_reduction']:.2f}x, energy {energy_words} than dense (MAC jobs); "
            f"a step takes {seconds * 1e3:.2f} ms and {energy_text(energy)}; "
            f"{total['tflops_per_watt']:.2f} TFLOPS/W of effective work "
            f"({total['tflops_per_watt_dense_equivalent']:.2f} dense-equivalent, "
            f"{total['tflops_per_watt_on_chip']:.2f} on chip without DRAM). ")
