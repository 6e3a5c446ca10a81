"""Own models: a network defined in a file is recorded through `accelsim record --model
FILE.py:build` and replayed; sparsify keeps the model's function; layer patterns; grouped
convs refused at record time, never later."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from accelsim.cli import main  # noqa: E402
from accelsim.network import builtin_network  # noqa: E402
from accelsim.trace import TraceReader  # noqa: E402
from workloads.encoders import build_encoder, sparsify  # noqa: E402
from workloads.gating import (  # noqa: E402
    BranchConv2d,
    BranchLinear,
    GatingConfig,
    LayerOptionError,
    branch_convs,
)
from workloads.models import build_backbone, layer_geometry  # noqa: E402
from workloads.post_ops import derive_post_ops  # noqa: E402
from workloads.pruning import SyncCPConfig  # noqa: E402

FP8 = Path(__file__).resolve().parents[2] / "hw_configs" / "fp8_tensor_edge_28nm.yaml"
DATA = "synthetic:n=48,classes=4,size=16,channels=3,seed=1"

RESIDUAL_MODEL = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class Net(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.stage1 = Block(8, 8, 1)
        self.stage2 = Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(in_channels):
    return Net(in_channels)
'''

SEPARABLE_MODEL = '''
from torch import nn


def separable(cin, cout, stride):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def build(in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        separable(8, 16, 1), separable(16, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return f"{path}:build"


def _record(out: Path, model: str, *options: str) -> object:
    return CliRunner().invoke(main, [
        "record", "--model", model, "--data", DATA, "--steps", "2", "--record-every", "1",
        "--batch-size", "8", "--quiet", "--out", str(out), *options])


def _simulate(run: Path, out: Path) -> dict:
    result = CliRunner().invoke(main, ["simulate", str(run), "--hw", str(FP8), "--out",
                                       str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("algo", [["--algo", "cdg", "--gate-groups", "2"],
                                  ["--algo", "synccp", "--weight-pattern", "nm:2:4"]],
                         ids=["cdg", "synccp-2:4"])
def test_a_model_from_a_file_records_and_replays(tmp_path: Path, algo: list[str]) -> None:
    model = _write(tmp_path, "net.py", RESIDUAL_MODEL)
    run = tmp_path / "run"
    result = _record(run, model, *algo)
    assert result.exit_code == 0, result.output
    reader = TraceReader(run / "trace")
    reader.verify()
    assert reader.steps == [0, 1]
    layers = {item.name: item for item in reader.layers}
    assert list(layers) == ["stem.0", "stage1.conv1", "stage1.conv2", "stage2.conv1",
                            "stage2.conv2", "stage2.downsample.0", "fc"]
    # geometry and non-MAC ops come from the model itself
    assert layers["stem.0"].layer.post_ops == ("batchnorm", "relu", "maxpool", "fanout")
    assert layers["stage1.conv1"].layer.h_in == 8  # after the max-pool
    assert layers["stage1.conv2"].layer.post_ops == ("batchnorm", "add", "relu", "fanout")
    assert layers["stage2.conv2"].layer.post_ops == ("batchnorm", "add", "relu", "pool")
    assert layers["stage2.downsample.0"].layer.post_ops == ("batchnorm",)
    assert layers["fc"].layer.kind == "linear" and layers["fc"].layer.role == "head"
    # default selection: the convs inside blocks (and, pruned, the shortcut), never stem or fc
    if algo[1] == "cdg":
        masked = {name for name, item in layers.items() if item.gate is not None}
        assert masked == {"stage1.conv1", "stage1.conv2", "stage2.conv1", "stage2.conv2"}
    else:
        masked = {name for name, item in layers.items() if item.weight is not None}
        assert masked == {"stage1.conv1", "stage1.conv2", "stage2.conv1", "stage2.conv2",
                          "stage2.downsample.0"}
    assert json.loads((run / "trace" / "manifest.json").read_text())["producer"][
        "model_sha256"]
    summary = _simulate(run, tmp_path / "sim")
    assert summary["total"]["flops_reduction"] > 1
    assert summary["total"]["cycles_non_mac"] > 0


def test_a_depthwise_separable_model_replays_with_its_grouped_convs_dense(
        tmp_path: Path) -> None:
    model = _write(tmp_path, "mobile.py", SEPARABLE_MODEL)
    run = tmp_path / "run"
    result = _record(run, model, "--algo", "synccp", "--weight-pattern", "nm:2:4")
    assert result.exit_code == 0, result.output
    layers = {item.name: item for item in TraceReader(run / "trace").layers}
    assert layers["3.0"].layer.groups == 8 and layers["3.0"].weight is None
    assert layers["3.3"].weight is not None  # the pointwise conv is pruned
    summary = _simulate(run, tmp_path / "sim")
    assert summary["total"]["flops_reduction"] > 1
    info = CliRunner().invoke(main, ["trace", "info", str(run)])
    assert " g8 " in info.output


@pytest.mark.parametrize("options, field", [
    (["--algo", "synccp", "--prune-layers", "3.*"], "--prune-layers"),  # a depthwise conv
    (["--algo", "cdg", "--gate-layers", "4.0"], "--gate-layers"),
    (["--algo", "cdg", "--gate-layers", "nothing*"], "--gate-layers"),
])
def test_masks_on_grouped_convs_are_refused_before_training(
        tmp_path: Path, options: list[str], field: str) -> None:
    model = _write(tmp_path, "mobile.py", SEPARABLE_MODEL)
    run = tmp_path / "run"
    result = _record(run, model, *options)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {field}: ") and result.output.count("\n") == 1
    assert not run.exists()  # refused before anything was written


def test_sparsify_keeps_the_function_and_assigns_roles(tmp_path: Path) -> None:
    from workloads.encoders import load_factory

    factory = load_factory(_write(tmp_path, "net.py", RESIDUAL_MODEL))
    torch.manual_seed(0)
    plain = factory(in_channels=3).eval()
    converted = sparsify(factory(in_channels=3).eval())
    converted.load_state_dict({k: v.view_as(converted.state_dict()[k])
                               for k, v in plain.state_dict().items()})
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(converted(x), plain(x))
    roles = {name: conv.role for name, conv in branch_convs(converted)}
    assert roles == {"stem.0": "stem", "stage1.conv1": "block", "stage1.conv2": "block",
                     "stage2.conv1": "block", "stage2.conv2": "block",
                     "stage2.downsample.0": "downsample", "fc": "head"}
    assert isinstance(converted.fc, BranchLinear) and isinstance(converted.stem[0], BranchConv2d)


def test_layer_patterns_choose_the_gated_and_pruned_layers(tmp_path: Path) -> None:
    model = _write(tmp_path, "net.py", RESIDUAL_MODEL)
    gating = GatingConfig(kind="cdg", groups=2, layers=("*.conv2",))
    encoder, dim = build_encoder(model, 1.0, 3, 16, gating, None)
    assert dim == 16
    assert [n for n, c in branch_convs(encoder) if c.gating is not None] == [
        "stage1.conv2", "stage2.conv2"]
    pruning = SyncCPConfig(pattern="nm:2:4", layers=("stage2.*", "fc"))
    encoder, _ = build_encoder(model, 1.0, 3, 16, None, pruning)
    assert [n for n, c in branch_convs(encoder) if pruning.prunes(n, c.role, c.groups)] == [
        "stage2.conv1", "stage2.conv2", "stage2.downsample.0", "fc"]
    with pytest.raises(LayerOptionError, match="linear layer"):
        build_encoder(model, 1.0, 3, 16, GatingConfig(kind="cdg", groups=2, layers=("fc",)),
                      None)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet18-imagenet",
                                  "resnet50-imagenet"])
def test_graph_post_ops_equal_the_builtin_rule(name: str) -> None:
    """torch.fx reading of the built-in modules gives accelsim.network's post ops (and
    geometry) for every built-in ResNet."""
    with torch.device("meta"):
        backbone = build_backbone(name, 0.25)
    size = 64 if name.endswith("imagenet") else 16
    expected = builtin_network(name, batch=2, width=0.25, image_size=size).layers
    assert derive_post_ops(backbone) == {layer.name: layer.post_ops for layer in expected}
    assert layer_geometry(backbone, 2, size) == list(expected)


def test_record_samples_keeps_the_first_images_and_says_the_size(tmp_path: Path) -> None:
    from workloads.record import step_bytes

    run = tmp_path / "run"
    result = _record(run, "resnet20", "--algo", "cdg", "--gate-groups", "2", "--width", "0.5",
                     "--record-samples", "3")
    assert result.exit_code == 0, result.output
    reader = TraceReader(run / "trace")
    assert {item.layer.batch for item in reader.layers} == {3}
    full = tmp_path / "full"
    assert _record(full, "resnet20", "--algo", "cdg", "--gate-groups", "2", "--width",
                   "0.5").exit_code == 0
    whole = TraceReader(full / "trace")
    for step in (0, 1):  # training does not change: the first 3 images' gates, exactly
        for branch in (1, 2):
            gate = reader.gate(step, "layer1.0.conv1", branch)
            assert gate.shape[0] == 3
            assert np.array_equal(gate, whole.gate(step, "layer1.0.conv1", branch)[:3])
    expected = step_bytes(list(reader.layers))
    assert f"up to {expected / 1024:,.1f} KiB per recorded step" in result.output
    bits = sum(int(np.prod(item.gate.shape)) * 2 for item in reader.layers if item.gate)
    assert expected == (bits + 7) // 8
    _simulate(run, tmp_path / "sim")
    too_many = _record(tmp_path / "x", "resnet20", "--record-samples", "9")
    assert too_many.exit_code == 2 and "--record-samples: 9 is more than the batch of 8" in \
        too_many.output


def test_your_own_training_loop_records_through_the_api(tmp_path: Path) -> None:
    """docs/workloads.md's recipe for a loop of one's own: sparsify, SyncCP, trace_layers,
    TraceRecorder; the trace replays."""
    from workloads.encoders import load_factory
    from workloads.gating import set_branch
    from workloads.pruning import SyncCP
    from workloads.record import TraceRecorder, trace_layers

    torch.manual_seed(0)
    model = load_factory(_write(tmp_path, "net.py", RESIDUAL_MODEL))(in_channels=3)
    gating = GatingConfig(kind="scdg", groups=2, group_size=4)
    pruning = SyncCPConfig(pattern="nm:2:4", delta=0.0, layers=("stage2.*", "fc"))
    encoder = sparsify(model, gating, pruning)
    pruner = SyncCP({1: encoder, 2: encoder}, pruning)
    layers = trace_layers(encoder, batch=4, image_size=16, gating=gating, pruning=pruning)
    recorder = TraceRecorder(tmp_path / "trace", layers, {"model": "net.py:build"})
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01)
    for step in range(2):
        pruner.step(step)
        x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
        set_branch(encoder, 1)
        z1 = encoder(x1)
        set_branch(encoder, 2)
        z2 = encoder(x2)
        loss = -torch.nn.functional.cosine_similarity(z1, z2).mean()
        recorder.record(step, {1: encoder, 2: encoder}, pruner.masks(),
                        {"loss": float(loss.detach())})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    recorder.close()
    reader = TraceReader(tmp_path / "trace")
    reader.verify()
    fc = next(item for item in reader.layers if item.name == "fc")
    assert fc.weight is not None and fc.layer.kind == "linear"  # a pruned linear layer
    assert reader.weight(0, "fc", 1).mean() == 0.5
    summary = _simulate(tmp_path / "trace", tmp_path / "sim")
    assert summary["total"]["flops_reduction"] > 1


TWICE_MODEL = '''
from torch import nn


def build(in_channels):
    conv = nn.Conv2d(8, 8, 3, padding=1)
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), conv, nn.ReLU(), conv,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''

SQUEEZE_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.squeeze = nn.Conv2d(8, 8, 1)  # registered first, runs on a 1x1 map
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.body(torch.relu(self.stem(x))))
        return torch.flatten(self.squeeze(x.mean((2, 3), keepdim=True)), 1)


def build(in_channels):
    return Net(in_channels)
'''

CUSTOM_MODEL = '''
from torch import nn


class StandardisedConv(nn.Conv2d):
    def forward(self, x):
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(x, w, self.bias)


def build(in_channels):
    return nn.Sequential(StandardisedConv(in_channels, 8, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


TOKEN_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 4, stride=4)
        self.mix = nn.Linear(8, 8)  # on (N, tokens, 8)

    def forward(self, x):
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.mix(tokens).mean(1)


def build(in_channels):
    return Net(in_channels)
'''

STEM_AND_DEPTHWISE_MODEL = '''
from torch import nn


def build(in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


@pytest.mark.parametrize("text, options, field, message", [
    (TWICE_MODEL, [], "--model", "layer '1' runs more than once"),
    (TOKEN_MODEL, [], "--model", "layer 'mix' is a linear layer on inputs of shape"),
    (SQUEEZE_MODEL, ["--algo", "cdg", "--gate-groups", "2"], "--gate-layers",
     "layer 'squeeze' has a 1x1 output map"),
    (RESIDUAL_MODEL, ["--algo", "cdg", "--gate-groups", "3"], "--gate-groups/--gate-group-size",
     "layer 'stage1.conv1': gating groups G=3 must divide"),
    (CUSTOM_MODEL, [], "--model", "a StandardisedConv, a Conv2d with its own forward"),
    (STEM_AND_DEPTHWISE_MODEL, ["--algo", "synccp"], "--prune-layers", "no layer to prune"),
], ids=["run-twice", "token-linear", "gate-on-1x1", "groups", "subclass", "stem-only"])
def test_a_model_that_cannot_be_recorded_is_refused_before_training(
        tmp_path: Path, text: str, options: list[str], field: str, message: str) -> None:
    run = tmp_path / "run"
    result = _record(run, _write(tmp_path, "m.py", text), *options)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {field}: ") and message in result.output
    assert result.output.count("\n") == 1 and not run.exists()


def test_the_stem_is_the_first_conv_a_forward_runs(tmp_path: Path) -> None:
    model = _write(tmp_path, "m.py", SQUEEZE_MODEL)
    encoder, _ = build_encoder(model, 1.0, 3, 16, None, None)
    roles = {name: conv.role for name, conv in branch_convs(encoder)}
    assert roles == {"squeeze": "block", "stem": "stem", "body": "block"}
    run = tmp_path / "run"
    options = ["--algo", "cdg", "--gate-groups", "2", "--gate-layers", "body"]
    assert _record(run, model, *options).exit_code == 0
    assert _record(run, model, *options).exit_code == 0  # finished: nothing to redo
    # the file changes (the same layers, another initialisation): the run does not resume
    text = (tmp_path / "m.py").read_text()
    (tmp_path / "m.py").write_text(text.replace(
        "        self.body = nn.Conv2d(8, 8, 3, padding=1)\n",
        "        self.body = nn.Conv2d(8, 8, 3, padding=1)\n"
        "        nn.init.zeros_(self.body.bias)\n"))
    assert (tmp_path / "m.py").read_text() != text
    result = _record(run, model, *options)
    assert result.exit_code == 2
    assert "recorded from another version of" in result.output


SHORTCUT_FIRST_MODEL = '''
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.shortcut_bn = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.alias = self.conv1  # a second name of the same layer, run once

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv0(x)), 3, 2, 1, ceil_mode=True)
        identity = self.shortcut_bn(self.shortcut(x))  # the shortcut runs first
        out = self.bn1(self.alias(x))
        out = F.relu(out + identity)
        return torch.mean(out, (2, 3))


def build(in_channels):
    return Net(in_channels)
'''


def test_graph_post_ops_of_a_model_written_its_own_way(tmp_path: Path) -> None:
    """The add goes to the main path though the shortcut runs first; a max-pool in ceil mode
    is not the priced one; torch.mean over H, W pools, over channels does not; an alias is one
    layer."""
    encoder, _ = build_encoder(_write(tmp_path, "m.py", SHORTCUT_FIRST_MODEL), 1.0, 3, 16,
                               None, None)
    assert encoder.alias is encoder.conv1 and isinstance(encoder.conv1, BranchConv2d)
    assert derive_post_ops(encoder) == {
        "conv0": ("relu",),  # the ceil-mode max-pool ends the chain
        "shortcut": ("batchnorm",),
        "conv1": ("batchnorm", "add", "relu", "pool")}
    channels = SHORTCUT_FIRST_MODEL.replace("return torch.mean(out, (2, 3))",
                                            "return torch.mean(out, 1).flatten(1)")
    encoder, _ = build_encoder(_write(tmp_path, "c.py", channels), 1.0, 3, 16, None, None)
    assert derive_post_ops(encoder)["conv1"] == ("batchnorm", "add", "relu")


def test_a_model_changed_under_an_interrupted_run_does_not_resume(tmp_path: Path) -> None:
    model = _write(tmp_path, "net.py", RESIDUAL_MODEL)
    run = tmp_path / "run"
    options = ["--algo", "cdg", "--gate-groups", "2", "--steps", "3"]
    assert _record(run, model, *options).exit_code == 0
    (run / "eval.json").unlink()  # as if killed after its last checkpoint
    (tmp_path / "net.py").write_text((tmp_path / "net.py").read_text() + "\n# edited\n")
    result = _record(run, model, *options)
    assert result.exit_code == 2 and "recorded from another version of" in result.output
