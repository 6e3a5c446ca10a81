"""The training loop: sparse contrastive training that records a trace and evaluates the encoder.

A run directory holds ``run.yaml`` (the full :class:`RunConfig`), ``trace/`` (the accelsim trace),
``checkpoint.{npz,json}`` (written at every recorded step; no pickle), ``log.csv`` (per-step
loss and sparsity, appended) and ``eval.json`` (k-NN / linear-probe accuracy and the FLOPs
reduction measured from the real masks, written at the end).

Determinism: batch order and augmentations of step t are drawn from generators seeded by
(seed, epoch) and (seed, t), so a resumed run sees exactly the batches an uninterrupted run sees,
and the same seed gives the same trace bit for bit on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from accelsim.errors import InputError
from accelsim.fileio import atomic_write_json, atomic_write_text
from accelsim.inputs import load_json_file, parse_yaml, read_text_file
from accelsim.network import CIFAR_STEM_MAX_IMAGE, RESNETS
from accelsim.trace.format import list_step_files
from workloads.augment import SSLAugment
from workloads.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from workloads.data import ImageDataset, load_dataset
from workloads.encoders import build_encoder, is_model_file, model_file_digest
from workloads.evaluate import extract_features, fine_tune, knn_accuracy, linear_probe
from workloads.gating import (
    LayerOptionError,
    gate_macs,
    gate_parameters,
    gate_regularizer,
    gate_sparsity,
    gated_convs,
)
from workloads.pruning import SyncCP
from workloads.record import TraceRecorder, step_bytes, trace_layers
from workloads.run_config import RunConfig, run_config, run_difference, same_run
from workloads.ssl import build_method

__all__ = ["RunConfig", "Trainer", "check_run_directory", "run_config", "same_run",
           "summary_line", "train"]


def batch_indices(step: int, size: int, batch: int, seed: int) -> torch.Tensor:
    """Indices of step ``step``'s batch: epochs are seeded permutations, drop_last."""
    per_epoch = size // batch
    if per_epoch < 1:
        raise InputError(f"the dataset has {size} images, fewer than one batch of {batch}",
                         field="batch_size")
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[index * batch:(index + 1) * batch]


def step_generator(seed: int, step: int, view: int) -> torch.Generator:
    """The augmentation generator of one view of one step."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4 + view)


def _encoder_parameters(method: torch.nn.Module) -> tuple[list, list]:
    taus = {id(p) for p in gate_parameters(method)}
    params = method.trainable_parameters()
    return ([p for p in params if id(p) not in taus], [p for p in params if id(p) in taus])


def measured_flops(encoders: dict[int, torch.nn.Module]) -> dict[str, float]:
    """FLOPs view of the gated layers from the last forward's real masks (per trace branch:
    each encoder's, once for SimCLR's shared one)."""
    dense = sparse = 0
    unique = {id(encoder): encoder for encoder in encoders.values()}
    for encoder in unique.values():
        for _, conv in gated_convs(encoder):
            for branch, gate in sorted(conv.last_gate.items()):
                n, _, ho, wo = gate.shape
                dense += (conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels
                          * conv.out_channels * n * ho * wo)
                sparse += gate_macs(conv, branch)
            for branch, select in sorted(conv.last_select.items()):  # DGC
                ho, wo = conv.last_map
                dense += (conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels
                          * conv.out_channels * select.shape[0] * ho * wo)
                sparse += gate_macs(conv, branch)
    if not sparse:
        return {}
    return {"flops_reduction_gated_layers": dense / sparse}


class Trainer:
    """One run: model, method, pruner, recorder; ``run()`` trains, records and evaluates."""

    def __init__(self, config: RunConfig, out: Path, *, progress: bool = True) -> None:
        """Everything that can be refused is checked here, before :meth:`run` writes a file."""
        self.config, self.out, self.progress = config, Path(out), progress
        self.start_as = check_run_directory(self.out, config)  # "new", "resume" or "restart"
        if config.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise InputError("no CUDA device is available here; use --device cpu",
                                 field="--device")
            index = int(config.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise InputError(f"no CUDA device {index} here ({torch.cuda.device_count()} "
                                 "devices)", field="--device")
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        # image folders are decoded at the training size (64 pixels by default)
        stored = config.image_size or 64
        self.train_ds = load_dataset(config.data, "train", image_size=stored)
        self.test_ds = load_dataset(config.data, "test", image_size=stored)
        if len(self.train_ds.labels) < config.batch_size:
            raise InputError(f"{config.batch_size} is larger than the dataset "
                             f"{config.data!r} ({len(self.train_ds.labels)} training images)",
                             field="batch_size")
        self.image_size = config.image_size or self.train_ds.image_size[0]
        self.device = torch.device(config.device)
        spec = RESNETS.get(config.model)
        if spec is not None and not spec.imagenet_stem and \
                self.image_size > CIFAR_STEM_MAX_IMAGE:
            raise InputError(f"{config.model} is the CIFAR-style network (3x3 stem, no "
                             f"max-pool); at {self.image_size} pixels use "
                             f"{config.model}-imagenet or a smaller image_size",
                             field="image_size")
        try:
            backbone, feature_dim = build_encoder(config.model, config.width,
                                                  self.train_ds.channels, self.image_size,
                                                  config.gating, config.pruning)
        except LayerOptionError as error:
            raise InputError(str(error), field=error.option) from None
        except ValueError as error:
            raise InputError(str(error), field="--model") from None
        self.backbone = backbone.to(self.device, memory_format=torch.channels_last)
        self.feature_dim = feature_dim
        self.method = build_method(config.ssl, self.backbone, feature_dim,
                                   **({"symmetric": True} if config.symmetric else {}))
        self.method.to(self.device)
        self.pruner = None
        if config.pruning is not None:
            try:
                self.pruner = SyncCP(self.method.encoders(), config.pruning)
            except LayerOptionError as error:
                raise InputError(str(error), field=error.option) from None
            except ValueError as error:
                raise InputError(str(error), field="--weight-pattern") from None
        try:  # the geometry, post ops and mask specs the trace will declare
            self.layers = trace_layers(self.backbone, config.record_samples or config.batch_size,
                                       self.image_size, config.gating, config.pruning,
                                       branches=self.method.trace_branches,
                                       in_channels=self.train_ds.channels)
        except LayerOptionError as error:
            raise InputError(str(error), field=error.option) from None
        except ValueError as error:
            raise InputError(str(error), field="--model") from None
        if self.start_as == "resume":
            _check_same_model(self.out / "trace", self.layers, self._producer())
        weights, taus = _encoder_parameters(self.method)
        groups = [{"params": weights, "weight_decay": config.weight_decay},
                  {"params": taus, "weight_decay": 0.0, "lr": config.gate_lr or config.lr}]
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=config.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
        self.augment = SSLAugment.for_dataset(self.train_ds, size=self.image_size)

    # -- state -------------------------------------------------------------------------------

    def _state(self, step: int) -> dict[str, Any]:
        return {"step": step, "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "pruner": self.pruner.state_dict() if self.pruner else None}

    def _restore(self, state: dict[str, Any]) -> int:
        try:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.pruner is not None:
                self.pruner.load_state_dict(state["pruner"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise InputError(f"does not fit this run ({type(error).__name__}: "
                             f"{' '.join(str(error).split())[:120]})",
                             path=str(self.out / "checkpoint.npz")) from None
        return int(state["step"]) + 1

    def _producer(self) -> dict[str, Any]:
        config = self.config
        producer = {"algorithm": config.algo, "ssl": config.ssl, "model": config.model,
                    "width": config.width, "dataset": config.data, "seed": config.seed,
                    "steps": config.steps, "batch_size": config.batch_size,
                    "image_size": self.image_size, "generator": "workloads.train",
                    "config": config.to_dict()}
        if is_model_file(config.model):
            producer["model_sha256"] = model_file_digest(config.model)
        return producer

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train (resuming from a checkpoint when one exists), record, evaluate."""
        config, out = self.config, self.out
        out.mkdir(parents=True, exist_ok=True)
        resume, restart = self.start_as == "resume", self.start_as == "restart"
        checkpoint = load_checkpoint(out / "checkpoint", str(self.device)) if resume else None
        if checkpoint is not None:
            done = checkpoint.get("step") if isinstance(checkpoint, dict) else None
            if not (isinstance(done, int) and 0 <= done < config.steps):
                raise InputError(f"step {done!r} is not a step of this run "
                                 f"(0..{config.steps - 1})", path=str(out / "checkpoint.json"))
            finished = out / "eval.json"
            if done == config.steps - 1 and finished.exists():  # nothing to redo
                return _read_evaluation(finished)
        layers = self.layers
        recorded = sum(1 for step in range(config.steps) if self._is_record_step(step))
        size = step_bytes(layers, self.method.trace_branches)
        print(f"trace: up to {_size_text(size)} per recorded step before compression, "
              f"{recorded} recorded steps: up to {_size_text(recorded * size)}"
              + ("" if config.record_samples else
                 " (--record-samples N records the first N images of each batch)"),
              file=sys.stderr)
        recorder = TraceRecorder(out / "trace", layers, self._producer(),
                                 branches=self.method.trace_branches, resume=resume,
                                 overwrite=restart, compression_level=config.trace_compression,
                                 min_saving=config.trace_min_saving,
                                 samples=config.record_samples)
        atomic_write_text(out / "run.yaml", yaml.safe_dump(config.to_dict(), sort_keys=True))
        start = 0
        if checkpoint is not None:
            start = self._restore(checkpoint)
            _truncate_log(out / "log.csv", start)
        elif restart:
            (out / "log.csv").unlink(missing_ok=True)
        last_recorded = recorder.last_step if recorder.last_step is not None else -1
        started = time.perf_counter()
        bar = _progress(config.steps, start, self.progress)
        logs: dict[str, float] = {}
        for step in range(start, config.steps):
            logs = self.train_step(step, recorder, last_recorded)
            if self._is_record_step(step) and step > last_recorded:
                save_checkpoint(out / "checkpoint", self._state(step))
            _append_log(out / "log.csv", step, logs)
            bar.update(logs)
        bar.close()
        recorder.close()
        result = self.evaluate()
        result.update({"train_seconds": time.perf_counter() - started, "steps": config.steps,
                       "final_loss": logs.get("loss")})
        atomic_write_json(out / "eval.json", result)
        return result

    def _is_record_step(self, step: int) -> bool:
        return step % self.config.record_every == 0 or step == self.config.steps - 1

    def train_step(self, step: int, recorder: TraceRecorder, last_recorded: int
                   ) -> dict[str, float]:
        """One optimizer step; records the masks its forwards used when it is a record step."""
        config = self.config
        self.method.train()
        if self.pruner is not None:
            self.pruner.step(step)
        index = batch_indices(step, len(self.train_ds.labels), config.batch_size, config.seed)
        images = self.train_ds.images[index].to(self.device)
        view1 = self.augment(images, step_generator(config.seed, step, 1))
        view2 = self.augment(images, step_generator(config.seed, step, 2))
        loss, logs = self.method.training_step(view1, view2, step)
        if config.gating is not None:
            loss = loss + gate_regularizer(self.method)
            logs["gate_sparsity"] = gate_sparsity(self.method)
        if self.pruner is not None:
            sparsity = self.pruner.weight_sparsity()
            logs["weight_sparsity_1"], logs["weight_sparsity_2"] = sparsity[1], sparsity[2]
        logs["loss"] = float(loss.detach())
        if self._is_record_step(step) and step > last_recorded:
            stats = {**logs, "dense_weight_gradient": bool(
                self.pruner is not None and self.pruner.needs_dense_gradient(step))}
            recorder.record(step, self.method.encoders(),
                            self.pruner.masks() if self.pruner else None, stats)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.on_step_end(step, config.steps)
        return logs

    def evaluate(self) -> dict[str, Any]:
        """k-NN (and linear-probe) accuracy of branch 1's features; FLOPs from the real masks."""
        config = self.config
        flops = measured_flops(self.method.encoders())  # before eval forwards overwrite gates
        train = _head(self.train_ds, config.eval_train_samples)
        test = _head(self.test_ds, config.eval_test_samples)
        train_f, train_y = extract_features(self.method, train, device=self.device)
        test_f, test_y = extract_features(self.method, test, device=self.device)
        result: dict[str, Any] = {
            "knn_accuracy": knn_accuracy(train_f, train_y, test_f, test_y, k=config.knn_k),
            "chance_accuracy": 1.0 / self.train_ds.num_classes,
            "eval_train_samples": len(train_y), "eval_test_samples": len(test_y), **flops,
        }
        if config.linear_probe:
            result["linear_accuracy"] = linear_probe(train_f, train_y, test_f, test_y,
                                                     epochs=config.linear_epochs,
                                                     seed=config.seed)
        if config.finetune_epochs:
            result["finetune_accuracy"], result["finetune_samples"] = fine_tune(
                self.method.encoders()[1], self.feature_dim, self.train_ds, test,
                fraction=config.finetune_fraction, epochs=config.finetune_epochs,
                lr=config.finetune_lr, batch_size=config.batch_size, seed=config.seed,
                device=self.device)
        if config.gating is not None:
            result["gate_sparsity"] = gate_sparsity(self.method)
        if self.pruner is not None:
            result["weight_sparsity"] = {str(k): v for k, v in
                                         self.pruner.weight_sparsity().items()}
        return result


def _head(dataset: ImageDataset, count: int) -> ImageDataset:
    if count <= 0 or count >= len(dataset.labels):
        return dataset
    return dataset.subset(slice(0, count))


def _size_text(size: float) -> str:
    """Bytes as ``12.3 KiB`` / ``4.5 MiB`` / ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def _check_same_model(trace: Path, layers: list[Any], producer: dict[str, Any]) -> None:
    """A run resumes only into a trace of the same network: the same layers (geometry, post
    ops, mask specs) and, for a model from a file, the same file contents."""
    from accelsim.trace import TraceReader

    if not (trace / "manifest.json").exists():
        return
    manifest = TraceReader(trace).manifest

    def shape(item: Any) -> Any:  # what the steps' masks depend on (the manifest's post ops
        # and roles stay as recorded: an older accelsim may have derived them differently)
        return (dataclasses.replace(item.layer, post_ops=(), role="other"), item.gate,
                item.weight)

    stored, current = list(manifest.layers), list(layers)
    differing = next((new.name for old, new in zip(stored, current, strict=False)
                      if shape(old) != shape(new)), None)
    if len(stored) != len(current) or differing is not None:
        where = f"layer {differing!r} differs" if differing else \
            f"{len(stored)} layers there, {len(current)} here"
        raise InputError(f"its trace was recorded from another network ({where}); use "
                         "another --out", path=str(trace))
    digest = producer.get("model_sha256")
    if digest is not None and manifest.producer.get("model_sha256") != digest:
        raise InputError(f"its trace was recorded from another version of "
                         f"{producer.get('model')} (the file changed); use another --out",
                         path=str(trace))


def check_run_directory(out: Path, config: RunConfig) -> str:
    """How a run of ``config`` may use ``out``, decided before any file is written:

    - ``"new"``: nothing of a run is there;
    - ``"resume"``: this run, with a checkpoint to resume from;
    - ``"restart"``: this run, killed before its first checkpoint (its trace holds at most step
      0, and is replaced).

    Anything else is an InputError: another run (naming the first key that differs), a trace or
    checkpoint without ``run.yaml``, recorded steps without a checkpoint."""
    run_yaml, trace = out / "run.yaml", out / "trace"
    has_trace = trace.is_dir() and any(trace.iterdir())
    if not run_yaml.exists():
        if has_trace or (out / "checkpoint.json").exists():
            raise InputError("holds a trace or a checkpoint but no run.yaml: not a run directory "
                             "of accelsim record; use another --out", path=str(out))
        return "new"
    stored = parse_yaml(read_text_file(run_yaml, "YAML"), str(run_yaml))
    if not isinstance(stored, dict):
        raise InputError("is not a mapping: not a run.yaml of accelsim record; use another "
                         "--out", path=str(run_yaml))
    difference = run_difference(stored, config)
    if difference is not None:
        raise InputError(f"holds a run with a different configuration ({difference}); use "
                         "another --out", path=str(out))
    if checkpoint_exists(out / "checkpoint"):
        return "resume"
    recorded = list_step_files(trace)[0] if trace.is_dir() else []
    if (out / "eval.json").exists() or any(step > 0 for step in recorded):
        raise InputError("holds recorded steps of this run but no checkpoint to resume them from; "
                         "delete it or use another --out", path=str(out))
    return "restart"


def _read_evaluation(path: Path) -> dict[str, Any]:
    """A finished run's eval.json (what :func:`summary_line` prints)."""
    result = load_json_file(path)

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    ok = isinstance(result, dict) and all(number(result.get(key)) for key in _EVAL_REQUIRED) \
        and all(number(result[key]) for key in _EVAL_OPTIONAL if key in result) \
        and (isinstance(result.get("weight_sparsity", {}), dict)
             and all(number(v) for v in result.get("weight_sparsity", {}).values()))
    if not ok:
        raise InputError("not an evaluation of accelsim record; delete it to evaluate again",
                         path=str(path))
    return result


_EVAL_REQUIRED = ("knn_accuracy", "chance_accuracy")  # what summary_line prints
_EVAL_OPTIONAL = ("linear_accuracy", "finetune_accuracy", "flops_reduction_gated_layers",
                  "gate_sparsity")


def _truncate_log(path: Path, start: int) -> None:
    """Drop log rows of steps >= ``start`` (they are re-run after a resume)."""
    if not path.exists():
        return
    lines = read_text_file(path, "CSV").splitlines(keepends=True)
    try:
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < start]
    except ValueError:
        raise InputError("a row does not start with its step; delete the file (the log of the "
                         "steps run so far is lost)", path=str(path)) from None
    atomic_write_text(path, "".join(kept))


def _append_log(path: Path, step: int, logs: dict[str, float]) -> None:
    """Append one CSV row (header on first write). Lines are short, so an append is atomic."""
    keys = sorted(logs)
    new = not path.exists()
    with path.open("a") as handle:
        if new:
            handle.write("step," + ",".join(keys) + "\n")
        handle.write(f"{step}," + ",".join(f"{logs[k]:.6g}" for k in keys) + "\n")


class _progress:
    """A one-line progress bar on stderr: step, rate, ETA, loss, gate and weight sparsity."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, start, enabled
        self.start_time, self.start_step = time.perf_counter(), start
        self.tty = sys.stderr.isatty()

    def update(self, logs: dict[str, float]) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start_time
        rate = (self.done - self.start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        parts = [f"step {self.done}/{self.total}", f"{rate:.2f} it/s",
                 f"eta {eta:.0f}s" if math.isfinite(eta) else "eta ?",
                 f"loss {logs.get('loss', float('nan')):.4f}"]
        if "gate_sparsity" in logs:
            parts.append(f"gate sparsity {logs['gate_sparsity']:.3f}")
        if "weight_sparsity_1" in logs:
            parts.append(f"weight sparsity {logs['weight_sparsity_1']:.3f}/"
                         f"{logs['weight_sparsity_2']:.3f}")
        line = " | ".join(parts)
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100))
        elif self.done == self.total or self.done % max(1, self.total // 20) == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def train(config: RunConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train, record and evaluate one run into ``out`` (resumes an interrupted run)."""
    return Trainer(config, out, progress=progress).run()


def summary_line(result: dict[str, Any]) -> str:
    """A one-line human summary of eval.json."""
    parts = [f"k-NN accuracy {result['knn_accuracy']:.3f} "
             f"(chance {result['chance_accuracy']:.3f})"]
    if "linear_accuracy" in result:
        parts.append(f"linear probe {result['linear_accuracy']:.3f}")
    if "finetune_accuracy" in result:
        parts.append(f"fine-tuned on {result.get('finetune_samples', '?')} labelled images "
                     f"{result['finetune_accuracy']:.3f}")
    if "flops_reduction_gated_layers" in result:
        parts.append(f"FLOPs reduction over gated layers "
                     f"{result['flops_reduction_gated_layers']:.2f}x")
    if "gate_sparsity" in result:
        parts.append(f"gate sparsity {result['gate_sparsity']:.3f}")
    if "weight_sparsity" in result:
        ws = result["weight_sparsity"]
        parts.append(f"weight sparsity {ws.get('1', 0):.3f}/{ws.get('2', 0):.3f}")
    return "; ".join(parts)
