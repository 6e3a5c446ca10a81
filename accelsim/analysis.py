"""Analysis of accelsim's tables: pure pandas over the results schema, no plotting.

The job table (``results.csv`` of a run, ``points/<id>.parquet`` of a sweep point) and the sweep
table (``results.csv`` of a sweep) are summarised here: sums and ratios per group
(:func:`aggregate`), lost cycles by cause (:func:`gap_decomposition`), the dense energy by
component (:func:`dense_energy_breakdown`), Pareto fronts (:func:`pareto_front`) and the best
sweep points (:func:`best_points`). :mod:`accelsim.plots` draws from these; reports and sweeps
call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from accelsim.errors import InputError

if TYPE_CHECKING:
    from accelsim.config import HardwareConfig

PHASE_ORDER = ("fw", "bd", "wg")
# The causes gap_decomposition splits lost cycles into, in the order reports draw them.
GAP_CAUSES = ("estimator_cycles", "unexploited_cycles", "lockstep_cycles", "stage_cycles",
              "imbalance_cycles", "decoder_cycles", "memory_cycles", "placement_cycles")
# Best sweep points are chosen on absolute figures: a ratio to the dense run at the same point
# would crown the slowest array, whose dense run is slowest too.
BEST_METRICS: dict[str, str] = {"seconds_step": "min", "energy_step_pj": "min",
                                "seconds": "min", "energy_pj": "min",
                                "tflops_per_watt": "max"}


def require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def ratio(numerator: pd.Series | float, denominator: pd.Series | float) -> Any:
    """numerator / denominator, 1 where the denominator is 0 (as accelsim's summaries do)."""
    if isinstance(denominator, pd.Series):
        safe = denominator.where(denominator != 0, np.nan)
        return (numerator / safe).fillna(1.0)
    return numerator / denominator if denominator else 1.0


SUM_COLUMNS = ("macs_dense", "macs_effective", "macs_required", "macs_issued", "cycles",
               "cycles_dense",
               "cycles_compute", "cycles_decoder_stall", "cycles_stage_wait", "energy_pj",
               "energy_dense_pj", "cycles_non_mac", "cycles_non_mac_dense")


def aggregate(results: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sum jobs over ``by`` (all steps), then the ratios the summaries use.

    Adds ``speedup`` = cycles_dense / cycles, ``flops_reduction`` = macs_dense / macs_effective,
    ``speedup_efficiency`` = speedup / flops_reduction and ``energy_reduction`` (1 where undefined),
    and where the table has the non-MAC columns ``speedup_step``: the whole step's
    (cycles_dense + cycles_non_mac_dense) / (cycles + cycles_non_mac). Groups keep the order in
    which they first appear.
    """
    columns = [c for c in SUM_COLUMNS if c in results.columns]
    if by:
        table = results.groupby(list(by), sort=False)[columns].sum().reset_index()
    else:
        table = results[columns].sum().to_frame().T
    table["speedup"] = ratio(table["cycles_dense"], table["cycles"])
    table["flops_reduction"] = ratio(table["macs_dense"], table["macs_effective"])
    table["speedup_efficiency"] = table["speedup"] / table["flops_reduction"]
    if "energy_pj" in table.columns and "energy_dense_pj" in table.columns:
        table["energy_reduction"] = ratio(table["energy_dense_pj"], table["energy_pj"])
    if "cycles_non_mac" in table.columns:
        table["speedup_step"] = ratio(table["cycles_dense"] + table["cycles_non_mac_dense"],
                                      table["cycles"] + table["cycles_non_mac"])
    return table


def dense_energy_breakdown(results: pd.DataFrame) -> pd.DataFrame:
    """Dense energy by component per job, derived exactly from the sparse run's rates (pJ).

    accelsim's energy is linear in its action counts (``docs/model.md``): MAC and register-file
    energy per issued MAC and static energy per cycle are the same for every job on one hardware
    config, so the dense job's ``mac``, ``rf`` and ``static`` parts are those rates x
    ``macs_dense`` and x ``cycles_dense``. The dense run's buffer and DRAM parts are not in the
    results; their sum is the rest of ``energy_dense_pj`` (column ``buffer_dram``). ``index`` is
    zero (dense jobs decode no index). Needs one hardware config per table.
    """
    issued = float(results["macs_issued"].sum())
    cycles = float(results["cycles"].sum())
    mac_rate = float(results["energy_mac_pj"].sum()) / issued if issued else 0.0
    rf_rate = float(results["energy_rf_pj"].sum()) / issued if issued else 0.0
    static_rate = float(results["energy_static_pj"].sum()) / cycles if cycles else 0.0
    dense = pd.DataFrame(index=results.index)
    dense["mac"] = results["macs_dense"] * mac_rate
    dense["rf"] = results["macs_dense"] * rf_rate
    dense["static"] = results["cycles_dense"] * static_rate
    dense["index"] = 0.0
    dense["network"] = 0.0
    rest = results["energy_dense_pj"] - dense["mac"] - dense["rf"] - dense["static"]
    dense["buffer_dram"] = rest.clip(lower=0.0)
    return dense


def gap_decomposition(results: pd.DataFrame, by: Sequence[str] = ("phase",), *,
                      macs_per_cycle: int | None = None, total: bool = True) -> pd.DataFrame:
    """Cycles lost between the FLOPs view and the hardware, split by cause (``docs/reports.md``).

    Every MAC is priced at what it costs the dense run of its own job on the same hardware,
    ``k = cycles_dense / macs_dense`` (cycles per MAC: the dense mapping's partial tiles,
    pipeline fill and memory time included), so losses the dense run has too are never blamed on
    sparsity. Per job, with q = macs_issued / macs_dense:

    - ``unexploited_cycles`` = (macs_issued - macs_effective) x k in jobs whose masks the
      hardware cannot skip with in their phase (``sparsity_supported`` 0): this hardware does
      not exploit this sparsity, whatever the training algorithm needs;
    - in the other jobs, ``estimator_cycles`` = (macs_required - macs_effective) x k: work the
      training algorithm needs although the FLOPs view skips it (FW's conditional path where a
      straight-through gate gradient needs it everywhere), and ``lockstep_cycles`` =
      (macs_issued - macs_required) x k: idle lanes of active lock-step units;
    - ``stage_cycles`` = cycles_stage_wait: queues waiting for the busiest one at every chunk
      of ``pe_array.stage_steps`` reduction steps, beyond the slowest queue's own sum (with
      compaction: beyond what balancing whole passes would take; 0 where results predate the
      column);
    - ``imbalance_cycles`` = cycles_compute - cycles_decoder_stall - cycles_stage_wait -
      cycles_compute_dense x q: compute beyond the dense mapping's for the MACs issued (queues
      waiting for the slowest of a pass, units that do not fill a tile; negative where
      compaction packs better than dense tiles);
    - ``decoder_cycles`` = cycles_decoder_stall;
    - ``memory_cycles`` = (cycles - cycles_compute) - (cycles_dense - cycles_compute_dense) x q:
      buffer- or DRAM-bound time beyond the dense run's, in proportion.

    Per group (``by``; plus an ``all`` row when ``total``) these sum to lost_cycles = cycles -
    ideal_cycles with ideal_cycles = cycles_dense / flops_reduction (flops_reduction = sum
    macs_dense / sum macs_effective over the group), once one more part is added:

    - ``placement_cycles`` = sum macs_effective x k - ideal_cycles: where the remaining MACs
      sit. Positive when sparsity skips MACs of jobs the dense mapping runs cheaply (high
      utilisation) and leaves those it runs at low utilisation: fewer cycles saved than MACs.

    Also ``dense_utilization`` = sum macs_dense / (P x sum cycles_dense), P the peak
    MACs/cycle (``macs_per_cycle``, else a ``macs_per_cycle`` column, else unknown: NaN): how
    full the dense mapping keeps the array, context that is not lost to sparsity. ``*_share``
    columns give each part as a fraction of lost cycles, NaN where nothing is lost (under
    0.01 % of the cycles).
    """
    require(results, ("macs_dense", "macs_effective", "macs_required", "macs_issued", "cycles",
                       "cycles_dense", "cycles_compute", "cycles_compute_dense",
                       "sparsity_supported", "cycles_decoder_stall", *by),
            "gap_decomposition")
    dense_macs = results["macs_dense"].astype(float)
    k = ratio(results["cycles_dense"].astype(float), dense_macs).where(dense_macs > 0, 0.0)
    q = ratio(results["macs_issued"].astype(float), dense_macs).where(dense_macs > 0, 0.0)
    supported = results["sparsity_supported"] != 0
    stage = (results["cycles_stage_wait"].astype(float) if "cycles_stage_wait" in results
             else pd.Series(0.0, index=results.index))
    needed = (results["macs_required"] - results["macs_effective"]) * k
    idle = (results["macs_issued"] - results["macs_required"]) * k
    dense_memory = results["cycles_dense"] - results["cycles_compute_dense"]
    jobs = pd.DataFrame({
        "estimator_cycles": needed.where(supported, 0.0),
        "unexploited_cycles": (needed + idle).where(~supported, 0.0),
        "lockstep_cycles": idle.where(supported, 0.0),
        "stage_cycles": stage,
        "imbalance_cycles": results["cycles_compute"] - results["cycles_decoder_stall"]
        - stage - results["cycles_compute_dense"] * q,
        "decoder_cycles": results["cycles_decoder_stall"].astype(float),
        "memory_cycles": results["cycles"] - results["cycles_compute"] - dense_memory * q,
        "effective_dense_cycles": results["macs_effective"] * k,
    })
    if macs_per_cycle is not None:
        peak = pd.Series(float(macs_per_cycle), index=results.index)
    elif "macs_per_cycle" in results.columns:
        peak = results["macs_per_cycle"].astype(float)
    else:
        peak = pd.Series(np.nan, index=results.index)
    jobs["peak_cycles_dense"] = results["macs_dense"] / peak
    for column in ("macs_dense", "macs_effective", "cycles", "cycles_dense", *by):
        jobs[column] = results[column]
    frames = []
    if by:
        grouped = jobs.groupby(list(by), sort=False).sum(numeric_only=True, min_count=1)
        grouped = grouped.reset_index()
        if "phase" in by:
            rank = {p: i for i, p in enumerate(PHASE_ORDER)}
            grouped = grouped.sort_values("phase", key=lambda s: s.map(rank).fillna(len(rank)),
                                          kind="stable").reset_index(drop=True)
        frames.append(grouped)
    if total or not by:
        whole = jobs.drop(columns=list(by)).sum(numeric_only=True, min_count=1).to_frame().T
        for column in by:
            whole[column] = "all"
        frames.append(whole)
    table = pd.concat(frames, ignore_index=True)
    table["flops_reduction"] = ratio(table["macs_dense"], table["macs_effective"])
    table["speedup"] = ratio(table["cycles_dense"], table["cycles"])
    table["ideal_cycles"] = table["cycles_dense"] / table["flops_reduction"]
    table["lost_cycles"] = table["cycles"] - table["ideal_cycles"]
    table["placement_cycles"] = table["effective_dense_cycles"] - table["ideal_cycles"]
    table["dense_utilization"] = table["peak_cycles_dense"] / table["cycles_dense"]
    parts = list(GAP_CAUSES)
    lost = table["lost_cycles"].where(table["lost_cycles"].abs() > 1e-4 * table["cycles"])
    for column in parts:
        table[column.replace("_cycles", "_share")] = table[column] / lost
    keep = [*by, "cycles", "cycles_dense", "speedup", "flops_reduction", "ideal_cycles",
            "lost_cycles", *parts, *(c.replace("_cycles", "_share") for c in parts),
            "dense_utilization"]
    return table[keep]


def varied_columns(table: pd.DataFrame) -> list[str]:
    """A sweep table's parameter columns: those between ``point_id`` and ``scope``."""
    columns = list(table.columns)
    if "point_id" in columns and "scope" in columns:
        return columns[columns.index("point_id") + 1:columns.index("scope")]
    return [c for c in columns if "." in c]


def pareto_front(table: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Boolean mask of the points no other point beats: lower or equal ``x`` and higher or equal
    ``y``, one of them strictly."""
    xs = table[x].to_numpy(dtype=float)
    ys = table[y].to_numpy(dtype=float)
    front = np.ones(len(table), dtype=bool)
    for i in range(len(table)):
        dominated = (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=table.index)


def best_points(table: pd.DataFrame, metrics: Mapping[str, str] | None = None
                ) -> pd.DataFrame:
    """Per trace and metric (scope total) the best point and its varied values.

    ``metrics`` maps a metric column to ``"max"`` or ``"min"`` (default :data:`BEST_METRICS`,
    those of its columns the table has: the whole step's and the MAC jobs' time and energy
    (min), tflops_per_watt (max)). Ties go to the lowest point index. Columns: trace, metric,
    goal, value (a sum over the trace's replayed steps for times and energies), point,
    point_id, the varied keys, and ``steps`` (replayed steps) where the table has it.
    """
    if metrics is None:
        metrics = {k: v for k, v in BEST_METRICS.items() if k in table.columns}
    varied = varied_columns(table)
    total = table[table["scope"] == "total"]
    rows = []
    for metric, goal in metrics.items():
        if goal not in ("max", "min"):
            raise InputError(f"{metric}: goal must be max or min, got {goal!r}", field="metrics")
        if metric not in table.columns:
            raise InputError(f"no column {metric!r} in the table", field="metrics")
    for trace in total["trace"].drop_duplicates():
        part = total[total["trace"] == trace]
        for metric, goal in metrics.items():
            values = part[metric].astype("float64")
            if values.isna().all():
                continue
            best = part.loc[values.idxmax() if goal == "max" else values.idxmin()]
            rows.append({"trace": trace, "metric": metric, "goal": goal,
                         "value": float(best[metric]), "point": int(best["point"]),
                         "point_id": best["point_id"], **{k: best[k] for k in varied}})
    frame = pd.DataFrame(rows, columns=["trace", "metric", "goal", "value", "point",
                                        "point_id", *varied])
    if "steps" in total.columns:  # values are sums over a trace's replayed steps
        steps = total.drop_duplicates("trace").set_index("trace")["steps"]
        frame["steps"] = frame["trace"].map(steps).fillna(1).astype("int64")
    return frame


# ---------------------------------------------------------------------------------------------
# Summaries (summary.json of a run; the records of a sweep's points)
# ---------------------------------------------------------------------------------------------

# Job-table columns that a summary sums: whole numbers, then real ones (pJ, bytes).
SUMMED_WHOLE = ("macs_dense", "macs_effective", "macs_required", "macs_issued", "cycles",
                "cycles_dense",
                "cycles_compute", "cycles_decoder_stall", "cycles_dram", "cycles_buffer",
                "decoder_indices")
SUMMED_REAL = ("dram_bytes", "traffic_indices_bytes", "energy_pj", "energy_dense_pj")
# The whole step's figures, meaningless where non-MAC work is not modelled (vector_unit.lanes 0).
WHOLE_STEP_METRICS = ("cycles_step", "cycles_step_dense", "seconds_step", "non_mac_share",
                      "speedup_step", "energy_step_pj", "energy_reduction_step")
# The vector unit's non-MAC work (zero in job tables written before it was modelled).
SUMMED_NON_MAC = ("cycles_non_mac", "cycles_non_mac_dense", "non_mac_ops", "dram_bytes_non_mac",
                  "energy_non_mac_pj", "energy_non_mac_vector_pj", "energy_non_mac_buffer_pj",
                  "energy_non_mac_dram_pj", "energy_non_mac_static_pj",
                  "energy_non_mac_dense_pj", "stash_bytes")


def tflops_per_watt(macs: float, energy_pj: float) -> float:
    """Energy efficiency of ``macs`` MACs for ``energy_pj``: 2 FLOPs per MAC over energy
    (TFLOP/J = TFLOPS/W); 0 without energy."""
    if energy_pj <= 0:
        return 0.0
    return 2 * macs / (energy_pj * 1e-12) / 1e12


def _energy_components(jobs: pd.DataFrame) -> list[str]:
    """The energy-by-component columns of a job table (energy_<component>_pj), in its order."""
    return [c for c in jobs.columns if c.startswith("energy_") and c.endswith("_pj")
            and c not in ("energy_pj", "energy_dense_pj") and "non_mac" not in c]


def _sums(jobs: pd.DataFrame, scopes: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per scope (a name and a boolean mask over the jobs) the job count and the sum of every
    summed column: int64 sums for whole numbers, float64 for real ones."""
    real = [*SUMMED_REAL, *_energy_components(jobs)]
    non_mac = [c for c in SUMMED_NON_MAC if c in jobs.columns]
    real += non_mac
    whole_values = jobs[list(SUMMED_WHOLE)].to_numpy(dtype=np.int64)
    real_values = jobs[real].to_numpy(dtype=np.float64)
    result = {}
    for name, mask in scopes.items():
        sums: dict[str, Any] = {"jobs": int(mask.sum())}
        sums.update({c: 0.0 for c in SUMMED_NON_MAC if c not in non_mac})
        sums.update(zip(SUMMED_WHOLE, (int(v) for v in whole_values[mask].sum(axis=0)),
                        strict=True))
        sums.update(zip(real, (float(v) for v in real_values[mask].sum(axis=0)), strict=True))
        result[name] = sums
    return result


def _totals(sums: Mapping[str, Any], components: Sequence[str], clock_mhz: float,
            macs_per_cycle: int) -> dict[str, Any]:
    """:func:`totals` from a scope's sums (:func:`_sums`)."""
    cycles, macs_effective = sums["cycles"], sums["macs_effective"]
    seconds = cycles / (clock_mhz * 1e6)
    energy = sums["energy_pj"]
    speedup = ratio(sums["cycles_dense"], cycles)
    flops_reduction = ratio(sums["macs_dense"], macs_effective)
    result: dict[str, Any] = {"jobs": sums["jobs"]}
    result.update({column: sums[column] for column in (
        "macs_dense", "macs_effective", "macs_required", "macs_issued", "cycles", "cycles_dense",
        "cycles_compute", "cycles_decoder_stall", "cycles_dram", "cycles_buffer")})
    result["seconds"] = seconds
    result["dram_bytes"] = sums["dram_bytes"]
    result["traffic_indices_bytes"] = sums["traffic_indices_bytes"]
    result["decoder_indices"] = sums["decoder_indices"]
    result["energy_pj"] = energy
    result["energy_dense_pj"] = sums["energy_dense_pj"]
    result["utilization"] = macs_effective / (cycles * macs_per_cycle) if cycles else 0.0
    # Three energy efficiencies, named apart: the useful (effective) work per joule; the dense
    # work per joule, as chips that skip report it; the useful work per on-chip joule (DRAM
    # energy left out).
    result["tflops_per_watt"] = tflops_per_watt(macs_effective, energy)
    result["tflops_per_watt_dense_equivalent"] = tflops_per_watt(sums["macs_dense"], energy)
    result["tflops_per_watt_on_chip"] = tflops_per_watt(
        macs_effective, energy - sums.get("energy_dram_pj", 0.0))
    result["effective_tflops"] = 2 * macs_effective / seconds / 1e12 if seconds else 0.0
    result["flops_reduction"] = flops_reduction
    result["speedup"] = speedup
    result["energy_reduction"] = ratio(sums["energy_dense_pj"], energy)
    result["speedup_efficiency"] = speedup / flops_reduction
    result.update({column: sums[column] for column in components})
    # The whole step: the MAC jobs and the vector unit's non-MAC work they carry.
    result.update({column: sums[column] for column in SUMMED_NON_MAC})
    step = cycles + sums["cycles_non_mac"]
    step_dense = sums["cycles_dense"] + sums["cycles_non_mac_dense"]
    result["cycles_step"] = step
    result["cycles_step_dense"] = step_dense
    result["seconds_step"] = step / (clock_mhz * 1e6)
    result["non_mac_share"] = sums["cycles_non_mac"] / step if step else 0.0
    result["speedup_step"] = ratio(step_dense, step)
    result["energy_step_pj"] = energy + sums["energy_non_mac_pj"]
    result["energy_reduction_step"] = ratio(sums["energy_dense_pj"]
                                            + sums["energy_non_mac_dense_pj"],
                                            result["energy_step_pj"])
    return result


def totals(jobs: pd.DataFrame, *, clock_mhz: float, macs_per_cycle: int) -> dict[str, Any]:
    """The totals of a job table (one row per job, as ``results.csv``): sums, seconds at
    ``clock_mhz``, utilization of ``macs_per_cycle`` peak MACs/cycle, the ratios (``speedup``
    = cycles_dense / cycles, ``flops_reduction`` = macs_dense / macs_effective,
    ``energy_reduction``, ``speedup_efficiency`` = speedup / flops_reduction; 1 where undefined),
    TFLOPS/W and effective TFLOPS of the useful work, and energy by component (pJ)."""
    sums = _sums(jobs, {"all": np.ones(len(jobs), dtype=bool)})["all"]
    return _totals(sums, _energy_components(jobs), clock_mhz, macs_per_cycle)


def summary(jobs: pd.DataFrame, hw: HardwareConfig) -> dict[str, Any]:
    """``summary.json`` of a job table on ``hw``: :func:`totals` overall, per phase (fw, bd,
    wg order) and per branch, with the hardware's name, digest and clock. ``speedup_efficiency``
    is 1 when the hardware turns every skipped MAC into saved time, less when it falls
    short."""
    phase = jobs["phase"].to_numpy()
    branch = jobs["branch"].to_numpy()
    phases = [p for p in PHASE_ORDER if (phase == p).any()]
    branches = sorted(int(b) for b in np.unique(branch))
    scopes = {"total": np.ones(len(jobs), dtype=bool)}
    scopes.update({f"phase {p}": phase == p for p in phases})
    scopes.update({f"branch {b}": branch == b for b in branches})
    sums = _sums(jobs, scopes)
    components = _energy_components(jobs)
    clock, peak = hw.pe_array.clock_mhz, hw.pe_array.macs_per_cycle
    return {
        "hardware": hw.name,
        "hardware_digest": hw.digest(),
        "clock_mhz": clock,
        "total": _totals(sums["total"], components, clock, peak),
        "per_phase": {p: _totals(sums[f"phase {p}"], components, clock, peak) for p in phases},
        "per_branch": {str(b): _totals(sums[f"branch {b}"], components, clock, peak)
                       for b in branches},
        "non_mac_modelled": bool(hw.vector_unit.lanes),
        "steps": int(jobs["step"].nunique()),
    }


def replay_summary(jobs: pd.DataFrame, storage: Mapping[str, int], hw: HardwareConfig,
                   workload: str, producer: Mapping[str, Any],
                   gated_layers: Sequence[str]) -> dict[str, Any]:
    """:func:`summary` of a replay plus its index storage (bits used, as element bitmaps, and
    their ratio) and the FLOPs view over the gated layers' forward pass."""
    result = summary(jobs, hw)
    result["workload"] = workload
    result["producer"] = dict(producer)
    bits, bitmap = int(storage["bits"]), int(storage["bits_bitmap"])
    result["index"] = {"bits": bits, "bits_bitmap": bitmap,
                       "index_reduction": bitmap / bits if bits else 1.0}
    gated = jobs[jobs["layer"].isin(set(gated_layers)) & (jobs["phase"] == "fw")]
    if len(gated):
        result["gated_layers_fw"] = totals(gated, clock_mhz=hw.pe_array.clock_mhz,
                                           macs_per_cycle=hw.pe_array.macs_per_cycle)
    return result
