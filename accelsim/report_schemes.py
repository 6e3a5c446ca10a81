"""The report's tables: one row per replayed trace naming its sparsity scheme (masks,
structure, settings) with its speedups, energy and index figures, the lost cycles by cause per
scheme and phase, and both tables as the page shows them (units, blanks for missing values)."""


from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from accelsim import report_text
from accelsim.report_inputs import ACCURACY_KEYS, RunOutput
from accelsim.units import ENERGY_UNITS, scale_unit

# ---------------------------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------------------------


def flatten_params(data: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leaf values of nested dicts by their own key (the first occurrence wins, outer first)."""
    into = {} if into is None else into
    if isinstance(data, dict):
        nested = []
        for key, value in data.items():
            if isinstance(value, dict):
                nested.append(value)
            else:
                into.setdefault(str(key), value)
        for value in nested:
            flatten_params(value, into)
    return into


def first_param(params: dict[str, Any], *keys: str) -> Any:
    return next((params[k] for k in keys if params.get(k) is not None), None)


def _percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{100 * number:.0f} %" if number <= 1 else f"{number:g} %"


def _weight_name(pattern: str | None, sparsity: Any) -> tuple[str, str]:
    pattern = str(pattern) if pattern else "element"
    nm = re.fullmatch(r"(nmt?):(\d+):(\d+)", pattern)
    if nm:
        transposable = " transposable" if nm[1] == "nmt" else ""
        return f"{nm[2]}:{nm[3]}{transposable}", "structured"
    block = re.fullmatch(r"block:(\d+)x(\d+)", pattern)
    suffix = f" {_percent(sparsity)}" if sparsity is not None else ""
    if block:
        return f"block {block[1]}x{block[2]}{suffix}", "structured"
    return f"{pattern}{suffix}", "unstructured" if pattern == "element" else ""


def describe_scheme(producer: dict[str, Any] | None) -> dict[str, str]:
    """Scheme name, masks (gates/weights) and structure from a trace's producer dict.

    Synthetic traces: CDG (gate groups of 1 channel), SCDG sx1x1, SyncCP element/N:M/block with
    the weight sparsity. Recorded traces: the ``algorithm`` with its gate group size or weight
    pattern and sparsity where the producer names them. Structure: gate groups of more than one
    channel, N:M and blocks are structured; single-channel gates and element-wise weights are not.
    """
    if not producer:
        return {"scheme": "dense", "masks": "none", "structure": "dense"}
    params = flatten_params(producer.get("config", {}))
    flatten_params(producer, params)
    algorithm = str(producer.get("algorithm", "")).strip()
    group = first_param(params, "gate_group_size", "group_size")
    pattern = first_param(params, "weight_pattern", "pattern")
    sparsity = first_param(params, "weight_sparsity", "target_sparsity", "prune_sparsity")
    if sparsity is None and algorithm.lower() == "synccp":
        sparsity = params.get("sparsity")
    gates = params.get("gate_sparsity") is not None
    weights = sparsity is not None or (pattern is not None
                                       and str(pattern).startswith(("nm:", "nmt:")))
    if algorithm.lower() != "synthetic":
        lowered = algorithm.lower()
        gates = gates or lowered in ("cdg", "scdg", "cgnet", "fbs", "dgc")
        weights = weights or lowered == "synccp"
    parts: list[str] = []
    structures: list[str] = []
    if gates:
        size = int(group) if isinstance(group, (int, float)) and group else 1
        if algorithm.lower() == "fbs":  # one mask bit per (sample, channel): structured
            parts.append("FBS")
            size = 2
        elif algorithm.lower() == "dgc":  # one bit per (sample, head, input channel)
            parts.append("DGC")
            size = 2
        elif algorithm.lower() == "cgnet":
            parts.append("CGNet")
        elif size > 1 or algorithm.lower() == "scdg":
            parts.append(f"SCDG {size}x1x1" if size > 1 else "SCDG")
        else:
            parts.append("CDG")
        structures.append("structured" if size > 1 else "unstructured")
    if weights:
        text, structure = _weight_name(pattern, sparsity)
        parts.append(f"SyncCP {text}")
        structures.append(structure)
    if not parts:  # a trace without masks: recorded dense, or synthetic without sparsity
        parts.append("dense" if algorithm.lower() in ("dense", "synthetic")
                     else algorithm or "unknown")
    known = [s for s in structures if s]
    structure = known[0] if len(set(known)) == 1 else "mixed" if known else ""
    masks = " + ".join(m for m, on in (("gates", gates), ("weights", weights)) if on) or "none"
    return {"scheme": " + ".join(parts), "masks": masks, "structure": structure}


def _find_key(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        if data.get(key) is not None:
            return data[key]
        for value in data.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


MASK_ORDER = {"none": 0, "gates": 1, "weights": 2}
STRUCTURE_ORDER = {"dense": 0, "unstructured": 1, "structured": 2}


def scheme_table(runs: Sequence[RunOutput]) -> pd.DataFrame:
    """One row per replayed trace: scheme, masks, structure, hardware and the summary metrics.

    Columns: scheme (the label, told apart by run name where one hardware has it twice), run,
    label, masks, structure, hardware (with the digest where one name has several configs),
    hardware_digest, settings (what the scheme was trained with), workload, flops_reduction,
    speedup, speedup_efficiency, energy_reduction, index_reduction, index_bits_per_step,
    tflops_per_watt, decoder stall cycles, the whole step's figures, ``seconds_per_step`` and
    ``energy_per_step_pj`` (whole step where non-MAC work is modelled, else the MACs'), and
    ``knn_accuracy`` / ``linear_accuracy`` / ``finetune_accuracy`` with their change vs the
    dense run of the same workload (``knn_delta`` / ``linear_delta`` / ``finetune_delta``,
    percentage points) when runs carry them. Rows
    are ordered by hardware (first seen), then dense, gates, weights; unstructured before
    structured.
    """
    rows = []
    for run in runs:
        total = run.summary["total"]
        row: dict[str, Any] = {"run": run.name, "folder": run.path.name,
                               **describe_scheme(run.producer),
                               "hardware": run.summary.get("hardware", ""),
                               "hardware_digest": run.summary.get("hardware_digest", ""),
                               "settings": report_text.scheme_settings(run.producer),
                               "workload": repr(report_text.workload_key(run.producer))}
        for key in ("flops_reduction", "speedup", "speedup_efficiency", "energy_reduction",
                    "tflops_per_watt", "cycles_decoder_stall", "speedup_step",
                    "non_mac_share", "energy_reduction_step"):
            row[key] = total.get(key)
        step = total.get("cycles_step") or 0
        row["extra_non_mac_share"] = ((total.get("cycles_non_mac", 0)
                                       - total.get("cycles_non_mac_dense", 0)) / step
                                      if step else 0.0)
        steps = max(1, int(run.summary.get("steps", run.steps) or 1))
        modelled = bool(run.summary.get("non_mac_modelled"))
        row["seconds_per_step"] = float(total.get("seconds_step" if modelled else "seconds",
                                                  0.0)) / steps
        row["energy_per_step_pj"] = float(total.get("energy_step_pj" if modelled
                                                    else "energy_pj", 0.0)) / steps
        if not modelled:  # MAC-only: no whole-step figures
            for key in ("speedup_step", "non_mac_share", "energy_reduction_step",
                        "extra_non_mac_share"):
                row[key] = float("nan")
        index = run.summary.get("index", {})
        row["index_reduction"] = index.get("index_reduction", 1.0)
        row["index_bits_per_step"] = float(index.get("bits", 0)) / steps
        accuracy = run.summary.get("accuracy") if isinstance(run.summary.get("accuracy"),
                                                             dict) else {}
        for key in ACCURACY_KEYS:
            value = _find_key(accuracy, key)
            if value is None:
                value = run.summary.get(key, _find_key(run.producer, key))
            if isinstance(value, (int, float)):
                row[key] = float(value)
        row["seed"] = _find_key(run.producer, "seed")
        row["train_steps"] = accuracy.get("steps", _find_key(run.producer, "steps"))
        row["eval_test_samples"] = accuracy.get("eval_test_samples")
        rows.append(row)
    accuracy_columns = [k for k in ACCURACY_KEYS if any(k in r for r in rows)]
    columns = ["run", "folder", "label", "masks", "structure", "hardware",
               "hardware_digest", "settings", "workload", "flops_reduction", "speedup",
               "speedup_efficiency",
               "energy_reduction", "index_reduction", "index_bits_per_step", "tflops_per_watt",
               "cycles_decoder_stall",
               "speedup_step", "non_mac_share", "energy_reduction_step", "extra_non_mac_share",
               "seconds_per_step", "energy_per_step_pj", *accuracy_columns, "seed",
               "train_steps", "eval_test_samples"]
    for row in rows:
        row["label"] = row.pop("scheme")
    table = pd.DataFrame(rows, columns=columns)
    # One name, several configs (a --set without a new name): tell them apart by digest.
    named = table.groupby("hardware")["hardware_digest"].transform("nunique")
    table.loc[named > 1, "hardware"] = [f"{h} [{d[:8]}]" for h, d in zip(
        table.loc[named > 1, "hardware"], table.loc[named > 1, "hardware_digest"], strict=True)]
    hardware_rank = {h: i for i, h in enumerate(dict.fromkeys(table["hardware"]))}
    table = table.assign(
        _h=table["hardware"].map(hardware_rank),
        _m=table["masks"].map(MASK_ORDER).fillna(len(MASK_ORDER)),
        _s=table["structure"].map(STRUCTURE_ORDER).fillna(len(STRUCTURE_ORDER)),
    ).sort_values(["_h", "_m", "_s", "label"], kind="stable")  # ties: input order
    table = table.drop(columns=["_h", "_m", "_s"]).reset_index(drop=True)
    # A label one hardware has twice is told apart by the run's folder, else its run name.
    scheme = table["label"].copy()
    twice = table.duplicated(["label", "hardware"], keep=False)
    alike = table.duplicated(["label", "hardware", "folder"], keep=False)
    scheme[twice] = [f"{s} ({f if not a else r})" for s, f, r, a in zip(
        table.loc[twice, "label"], table.loc[twice, "folder"], table.loc[twice, "run"],
        alike[twice], strict=True)]
    table.insert(0, "scheme", scheme)
    for key in accuracy_columns:
        table[key.replace("_accuracy", "_delta")] = report_text.accuracy_delta(table, key)
    return table


def gap_table(runs: Sequence[RunOutput], schemes: pd.DataFrame) -> pd.DataFrame:
    """Lost cycles by cause (:func:`accelsim.analysis.gap_decomposition`) per scheme and
    phase; ``schemes`` is :func:`scheme_table` of the same runs (matched by run name)."""
    from accelsim.analysis import gap_decomposition

    frames = []
    by_name = {run.name: run for run in runs}
    for _, row in schemes.iterrows():  # in the scheme table's order
        run = by_name[row["run"]]
        table = gap_decomposition(run.results, ("phase",), macs_per_cycle=run.macs_per_cycle)
        for column in ("run", "hardware", "label", "scheme"):
            table.insert(0, column, row[column])
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Tables as shown
# ---------------------------------------------------------------------------------------------


def _formatted(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, blank where it is missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(number) else format(number, spec)


def _times(value: Any) -> str:
    text = _formatted(value, ".2f")
    return f"{text}x" if text else ""


def _share(value: Any) -> str:
    return _formatted(value, ".0%")


def _points(value: Any) -> str:
    text = _formatted(value, "+.1f")
    return f"{text} pp" if text else ""


def display_schemes(table: pd.DataFrame) -> pd.DataFrame:
    """Scheme rows formatted for reading: ratios as 1.23x, time in ms, energy in the unit that
    reads best, accuracy as the change vs dense."""
    energy_unit, energy_size = scale_unit(table["energy_per_step_pj"], ENERGY_UNITS)
    step = not table["speedup_step"].isna().all()
    shown = pd.DataFrame({
        "scheme": table["scheme"],
        "structure": table["structure"],
        "MACs kept": table["flops_reduction"].map(lambda v: _share(1 / float(v))
                                                  if float(v) else ""),
        "FLOPs reduction": table["flops_reduction"].map(_times),
        "speedup (MACs)": table["speedup"].map(_times),
        "speedup / FLOPs reduction": table["speedup_efficiency"].map(_share),
    })
    if step:
        shown["whole-step speedup"] = table["speedup_step"].map(_times)
        shown["energy reduction (whole step)"] = table["energy_reduction_step"].map(_times)
    else:
        shown["energy reduction (MACs)"] = table["energy_reduction"].map(_times)
    shown["step time (ms)"] = (table["seconds_per_step"] * 1e3).map(lambda v: f"{v:.2f}")
    shown[f"step energy ({energy_unit})"] = (table["energy_per_step_pj"] / energy_size).map(
        lambda v: f"{v:.3g}")
    shown["index storage / step (vs element bitmaps)"] = [
        f"{report_text.bits_text(b)} ({_times(r)})" if b else ""
        for b, r in zip(table["index_bits_per_step"], table["index_reduction"], strict=True)]
    for key, name in (("knn", "k-NN"), ("linear", "linear"), ("finetune", "fine-tuned")):
        if f"{key}_accuracy" in table.columns:
            shown[f"{name} accuracy, % (vs dense, pp)"] = [
                _formatted(100 * float(value), ".1f")
                + (f" ({_formatted(delta, '+.1f')})" if masks != "none" and _points(delta)
                   else "")
                for value, delta, masks in zip(table[f"{key}_accuracy"],
                                               table[f"{key}_delta"], table["masks"],
                                               strict=True)]
    return shown


def display_gap(gaps: pd.DataFrame) -> pd.DataFrame:
    def cycles(value: Any) -> str:
        return _formatted(float(value) / 1e6, ",.3f")

    shown = pd.DataFrame({"scheme": gaps["scheme"], "phase": gaps["phase"].map(
        lambda p: str(p).upper() if p != "all" else "all")})
    for column, label in (("cycles", "cycles"), ("ideal_cycles", "ideal"),
                          ("lost_cycles", "lost"), ("estimator_cycles", "gate gradient"),
                          ("unexploited_cycles", "not exploited"),
                          ("lockstep_cycles", "lock-step lanes"),
                          ("stage_cycles", "stage"),
                          ("imbalance_cycles", "imbalance"),
                          ("decoder_cycles", "decoder"), ("memory_cycles", "memory"),
                          ("placement_cycles", "placement")):
        shown[f"{label} (M cycles)"] = gaps[column].map(cycles)
    return shown
