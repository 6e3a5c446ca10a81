"""A training run's configuration: the recipe schema, checked without PyTorch.

:class:`RunConfig` is a schema of the shared validator (:mod:`accelsim.schema`): every key has
its type, range or choices and a description, which ``accelsim record`` turns into its options'
types. :func:`run_config` builds one from a recipe YAML and command-line options; :func:`same_run`
decides whether a run directory may be resumed with it. Importing this module loads no torch.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelsim.errors import InputError
from accelsim.inputs import parse_yaml, read_text_file
from accelsim.layer_patterns import parse_patterns
from accelsim.schema import Problems, abbreviate, build_or_raise, param
from accelsim.trace.manifest import GATE_GRADIENTS
from accelsim.trace.writer import MIN_SAVING

_DEVICE = re.compile(r"cpu|cuda(:\d{1,3})?")  # fullmatch: no trailing newline

if TYPE_CHECKING:
    from workloads.gating import GatingConfig
    from workloads.pruning import SyncCPConfig

ALGORITHMS = ("dense", "cdg", "scdg", "cgnet", "fbs", "dgc", "synccp")


SYNCCP_KEYS = ("weight_pattern", "final_sparsity", "initial_sparsity", "delta", "prune_start",
               "prune_end", "update_every", "score", "threshold", "regrow", "prune_layers")
CDG_KEYS = ("gate_groups", "gate_group_size", "overlap", "gate_gradient", "tau_init",
            "tau_target", "reg_lambda", "gate_lr")
GATING_KEYS = (*CDG_KEYS, "gate_layers", "fbs_density", "dgc_heads", "dgc_density")
GATING_ALGORITHMS = ("cdg", "scdg", "cgnet", "fbs", "dgc")
# The algorithms each algorithm-specific key applies to (every other key applies to all).
KEY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    **{key: ("synccp",) for key in SYNCCP_KEYS},
    **{key: ("cdg", "scdg", "cgnet") for key in CDG_KEYS},
    "gate_layers": GATING_ALGORITHMS,
    "reg_lambda": ("cdg", "scdg", "cgnet", "dgc"),  # DGC: the lasso on its saliency scores
    "fbs_density": ("fbs",),
    "dgc_heads": ("dgc",),
    "dgc_density": ("dgc",),
}
# FILE.py:FACTORY (workloads.encoders.is_model_file, without loading torch)
_MODEL_FILE = re.compile(r".+\.py:[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run depends on (CLI options and recipe keys use these names).

    Built from a recipe and options by :func:`run_config`, which checks every key's type and
    range (the shared validator, :mod:`accelsim.schema`), that each given key applies to the
    run's ``algo`` and the SyncCP and gating rules. Constructed directly (``RunConfig(...)``),
    only the device is checked: build runs with :func:`run_config`.
    """

    algo: str = param(default="dense", choices=ALGORITHMS, doc="sparsity algorithm")
    model: str = param(default="resnet20", doc="a built-in ResNet (resnet20, resnet18, "
                       "resnet18-imagenet, resnet50-imagenet) or FILE.py:FACTORY, a function "
                       "FACTORY(in_channels) returning the feature encoder")
    width: float = param(default=1.0, gt=0, le=64, doc="width multiplier")
    ssl: str = param(default="simclr", choices=("simclr", "byol", "moco"), doc="SSL method")
    symmetric: bool = param(default=False, doc="BYOL / MoCo: the symmetric loss (the BYOL "
                            "paper's), which also runs online(view 2) against target(view 1): "
                            "twice the encoder passes, recorded as trace branches 3 and 4")
    data: str = param(default="fashion-mnist", doc="NAME or NAME:PATH (workloads/data.py)")
    steps: int = param(default=200, ge=1, le=10**9, unit="steps", doc="optimizer steps")
    record_every: int = param(default=10, ge=1, le=10**9, unit="steps",
                              doc="record masks every K steps (and the last step)")
    trace_compression: int = param(default=1, ge=0, le=9, doc="zlib level of recorded masks "
                                   "(0: packed bits as they are, fastest replay; 9: smallest)")
    trace_min_saving: float = param(default=MIN_SAVING, ge=0, le=1, doc="a mask is stored "
                                    "compressed only when zlib saves at least this share of "
                                    "its bytes")
    batch_size: int = param(default=64, ge=2, le=1 << 20, unit="images", doc="images per branch")
    record_samples: int | None = param(default=None, ge=1, le=1 << 20, unit="images",
                                       doc="record the gates of the first N images of each "
                                       "branch's batch: the trace's steps are N-image steps "
                                       "(default: the whole batch)")
    device: str = param(default="cpu", doc="cpu or cuda[:N]")
    seed: int = param(default=0, ge=0, le=2**32 - 1, doc="random seed")
    image_size: int | None = param(default=None, ge=4, le=4096, unit="pixels",
                                   doc="training crop size (default: the dataset's)")
    optimizer: str = param(default="adam", choices=("adam", "sgd"), doc="optimizer")
    lr: float = param(default=2e-3, gt=0, le=100, doc="learning rate")
    weight_decay: float = param(default=1e-6, ge=0, le=1, doc="weight decay (not applied to "
                                "the gates' thresholds tau)")
    threads: int = param(default=0, ge=0, le=4096, doc="torch CPU threads (0: torch's default)")
    # gating (cdg / scdg / cgnet)
    gate_groups: int = param(default=4, ge=2, le=1024, doc="CDG gating groups G")
    gate_group_size: int | None = param(default=None, ge=1, le=1024, unit="channels",
                                        doc="SCDG s (default 8 for scdg, else 1)")
    overlap: float | None = param(default=None, ge=0, le=1, doc="base-path overlap of the "
                                  "branches (cgnet: 1)")
    gate_gradient: str = param(default="straight_through", choices=GATE_GRADIENTS,
                               doc="how the gate's gradient is taken")
    tau_init: float = param(default=0.0, ge=-1e3, le=1e3, doc="initial gate threshold")
    tau_target: float = param(default=0.52, ge=-1e3, le=1e3, doc="target of the threshold "
                              "regularizer")
    reg_lambda: float = param(default=1e-4, ge=0, le=1e3, doc="weight of the regularizer")
    gate_lr: float | None = param(default=None, gt=0, le=100, doc="learning rate of the "
                                  "thresholds tau (default: lr)")
    fbs_density: float = param(default=0.5, gt=0, le=1, doc="FBS: the share of each gated "
                               "layer's output channels a sample keeps (k-winners-take-all)")
    dgc_heads: int = param(default=4, ge=1, le=1024, doc="DGC: heads (groups of output "
                           "channels) of each gated layer; must divide its output channels")
    dgc_density: float = param(default=0.5, gt=0, le=1, doc="DGC: the share of a layer's "
                               "input channels each head reads per sample")
    gate_layers: str = param(default="", doc="comma-separated glob patterns of the qualified "
                             "names of the gated layers (default: the ungrouped convs inside "
                             "blocks; never the stem or a linear layer)")
    # SyncCP (synccp)
    weight_pattern: str = param(default="element", doc="element, nm:N:M, nmt:N:M "
                                "(transposable: N:M along output channels too) or block:BOxBI")
    final_sparsity: float = param(default=0.8, ge=0, lt=1, doc="final sparsity of "
                                  "branch 1")
    initial_sparsity: float = param(default=0.3, ge=0, lt=1, doc="initial sparsity")
    delta: float = param(default=0.3, ge=0, lt=1, doc="branch 2 denser by this")
    prune_start: int = param(default=0, ge=0, le=10**9, unit="steps", doc="first pruning step")
    prune_end: int | None = param(default=None, ge=0, le=10**9, unit="steps",
                                  doc="last pruning step (default: 75 % of the steps)")
    update_every: int = param(default=20, ge=1, le=10**9, unit="steps",
                              doc="steps between mask updates")
    score: str = param(default="magnitude", choices=("magnitude", "ema"), doc="pruning score")
    threshold: str = param(default="global", choices=("global", "layer"),
                           doc="one threshold for the network or one per layer")
    regrow: bool = param(default=False, doc="pruned weights may grow back")
    prune_layers: str = param(default="", doc="comma-separated glob patterns of the qualified "
                              "names of the pruned layers (default: the ungrouped convs inside "
                              "blocks and the projection shortcuts; not the stem or a linear "
                              "layer)")
    # evaluation
    eval_train_samples: int = param(default=10000, ge=0, le=10**9, unit="images",
                                    doc="k-NN memory bank / probe training set (0: all)")
    eval_test_samples: int = param(default=2000, ge=0, le=10**9, unit="images", doc="0: all")
    knn_k: int = param(default=200, ge=1, le=10**6, doc="k of the k-NN classifier")
    linear_probe: bool = param(default=True, doc="train a linear probe")
    linear_epochs: int = param(default=30, ge=0, le=10**6, doc="epochs of the linear probe")
    finetune_epochs: int = param(default=0, ge=0, le=10**6, doc="epochs of fine-tuning the "
                                 "encoder with a linear classifier on labelled images (0: no "
                                 "fine-tuning)")
    finetune_fraction: float = param(default=0.1, gt=0, le=1, doc="the share of the training "
                                     "set that is labelled for fine-tuning")
    finetune_lr: float = param(default=1e-3, gt=0, le=100, doc="learning rate of fine-tuning "
                               "(Adam)")

    def __post_init__(self) -> None:
        if not _DEVICE.fullmatch(self.device):
            raise InputError(f"must be cpu, cuda or cuda:N, got {abbreviate(self.device)}",
                             field="device")

    @property
    def gating(self) -> GatingConfig | None:
        """The gating of this run (None for dense and synccp)."""
        if self.algo not in GATING_ALGORITHMS:
            return None
        from workloads.gating import GatingConfig

        if self.algo == "fbs":
            return GatingConfig(kind="fbs", density=self.fbs_density,
                                layers=parse_patterns(self.gate_layers))
        if self.algo == "dgc":
            return GatingConfig(kind="dgc", density=self.dgc_density, heads=self.dgc_heads,
                                reg_lambda=self.reg_lambda,
                                layers=parse_patterns(self.gate_layers))
        return GatingConfig(kind=self.algo, groups=self.gate_groups,
                            group_size=self.gate_group_size, overlap=self.overlap,
                            tau_init=self.tau_init, tau_target=self.tau_target,
                            reg_lambda=self.reg_lambda, gate_gradient=self.gate_gradient,
                            layers=parse_patterns(self.gate_layers))

    @property
    def pruning(self) -> SyncCPConfig | None:
        """The SyncCP schedule of this run (None unless synccp)."""
        if self.algo != "synccp":
            return None
        end = self.prune_end if self.prune_end is not None else max(1, int(0.75 * self.steps))
        from workloads.pruning import SyncCPConfig

        return SyncCPConfig(pattern=self.weight_pattern, final_sparsity=self.final_sparsity,
                            initial_sparsity=self.initial_sparsity, delta=self.delta,
                            score=self.score, threshold=self.threshold, t0=self.prune_start,
                            tf=end, update_every=self.update_every, regrow=self.regrow,
                            layers=parse_patterns(self.prune_layers))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def applicable_keys(algo: str) -> set[str]:
    """The :class:`RunConfig` keys that affect a run of ``algo`` (the others do not apply:
    SyncCP keys outside ``synccp``, gating keys outside the gating algorithms)."""
    return {f.name for f in fields(RunConfig)
            if algo in KEY_ALGORITHMS.get(f.name, (algo,))}


def run_difference(stored: dict[str, Any], config: RunConfig) -> str | None:
    """The first difference that matters between a run directory's ``run.yaml`` (``stored``)
    and ``config``, or None when the run may resume with it. Keys it lacks were added to
    :class:`RunConfig` after it was written and take their defaults (a run recorded by an older
    accelsim resumes as long as the new keys keep them); keys that do not apply to the run's
    algorithm are ignored."""
    current = config.to_dict()
    unknown = sorted(str(key) for key in stored if key not in current)
    if unknown:
        return f"run.yaml has keys this accelsim does not know: {', '.join(unknown[:3])}"
    defaults = {f.name: f.default for f in fields(RunConfig)
                if f.default is not dataclasses.MISSING}
    merged = {**defaults, **stored}
    key = next((k for k in sorted(applicable_keys(config.algo))
                if merged.get(k) != current[k]), None)
    return None if key is None else f"{key}: {merged.get(key)!r} there, {current[key]!r} here"


def same_run(stored: Any, config: RunConfig) -> bool:
    """Whether a run directory's ``run.yaml`` (``stored``) describes ``config``
    (:func:`run_difference`)."""
    return isinstance(stored, dict) and run_difference(stored, config) is None


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def run_config(recipe: Path | None, options: dict[str, Any]) -> RunConfig:
    """The run of recipe YAML ``recipe`` (optional) with ``options`` (CLI options given, by
    field name) on top. Every problem is one InputError: an unknown key (did-you-mean), a wrong
    type or range, a key that does not apply to the run's ``algo`` (SyncCP keys without
    ``algo: synccp``, gating keys without a gating algorithm), and a SyncCP or gating setting
    its algorithm refuses (``weight_pattern: nm:4:2``). Options are named as options."""
    raw: dict[str, Any] = {}
    if recipe is not None:
        raw = parse_yaml(read_text_file(recipe, "YAML"), str(recipe))
        if raw is None:  # an empty file
            raw = {}
        if not isinstance(raw, dict):
            raise InputError("a recipe is a YAML mapping", path=str(recipe))
    merged = {**raw, **options}
    source = str(recipe) if recipe is not None else "record"
    labels = {key: _option(key) for key in options}
    config = build_or_raise(RunConfig, merged, source, labels=labels)
    problems = Problems(source, labels=labels)
    for key, algos in KEY_ALGORITHMS.items():
        if key in merged and config.algo not in algos:
            named = ", ".join(algos[:-1]) + " or " + algos[-1] if len(algos) > 1 else algos[0]
            problems.add(key, f"applies to algo {named} only, not to {config.algo}")
    from accelsim.network import MOMENTUM_SSL, RESNETS

    if "symmetric" in merged and config.ssl not in MOMENTUM_SSL:
        problems.add("symmetric", f"applies to ssl {' or '.join(MOMENTUM_SSL)} only, not to "
                     f"{config.ssl}")
    if config.record_samples is not None and config.record_samples > config.batch_size:
        problems.add("record_samples", f"{config.record_samples} is more than the batch of "
                     f"{config.batch_size}")

    if config.model not in RESNETS and not _MODEL_FILE.fullmatch(config.model):
        problems.add("model", f"expected one of {', '.join(RESNETS)} or FILE.py:FACTORY, got "
                     f"{abbreviate(config.model)}")
    elif config.model not in RESNETS and "width" in merged:
        problems.add("width", "applies to the built-in ResNets only, not to a model from a "
                     "file")
    problems.raise_if_any()
    for what, keys, build in (("SyncCP", SYNCCP_KEYS, lambda: config.pruning),
                              ("gating", GATING_KEYS, lambda: config.gating)):
        try:
            build()  # their own rules: patterns, schedules, group sizes
        except ValueError as error:
            given = [labels.get(key, key) for key in keys if key in merged]
            settings = f" ({', '.join(given)} given)" if given else ""
            raise InputError(f"{error}{settings}", path=source,
                             field=f"{what} settings") from None
    return config


