"""Synthetic traces (accelsim.trace.synth): exact sparsities, structures, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accelsim.errors import InputError
from accelsim.network import Network, builtin_network, conv, read_topology_csv, resnet20
from accelsim.trace import open_trace
from accelsim.trace.synth import (
    SynthConfig,
    WeightPattern,
    base_chunks,
    gate_mask,
    gated_layers,
    generator,
    kept_count,
    pruned_layers,
    round_half_up,
    synthesize,
    top_k_mask,
)


@pytest.fixture(scope="module")
def net() -> Network:
    return resnet20(batch=2)


TOPOLOGIES = Path(__file__).resolve().parents[1] / "topologies"


def make(tmp_path: Path, network: Network, name: str = "t", **kwargs: object):
    return open_trace(synthesize(network, tmp_path / name, SynthConfig(**kwargs)))


def all_gates(trace, step: int = 0):
    return {(item.name, b): trace.gate(step, item.name, b) for item in trace.layers
            if item.gate is not None for b in range(1, trace.branches + 1)}


def all_weights(trace, step: int = 0):
    return {(item.name, b): trace.weight(step, item.name, b) for item in trace.layers
            if item.weight is not None for b in range(1, trace.branches + 1)}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def neighbour_agreement(mask: np.ndarray) -> float:
    """Fraction of horizontally and vertically adjacent output pixels with equal gate bits."""
    horizontal = mask[..., 1:] == mask[..., :-1]
    vertical = mask[..., 1:, :] == mask[..., :-1, :]
    return float((horizontal.sum() + vertical.sum()) / (horizontal.size + vertical.size))


# -- which layers -------------------------------------------------------------------------------


def test_gated_and_pruned_layers_of_builtin_net(tmp_path: Path, net: Network) -> None:
    trace = make(tmp_path, net, gate_sparsity=0.5, weight_sparsity=0.5)
    roles = {item.name: item.layer.role for item in trace.layers}
    gated = {item.name for item in trace.layers if item.gate is not None}
    pruned = {item.name for item in trace.layers if item.weight is not None}
    assert len(trace.layers) == len(net.layers)
    assert gated == {n for n, r in roles.items() if r == "block"} == {
        layer.name for layer in gated_layers(net)}
    assert pruned == {n for n, r in roles.items() if r != "stem"} == {
        layer.name for layer in pruned_layers(net)}
    assert "layer2.0.shortcut" in pruned and "layer2.0.shortcut" not in gated
    assert "conv1" not in pruned


def test_topology_network_skips_only_the_first_layer(tmp_path: Path) -> None:
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nc1, 10, 10, 3, 3, 3, 8, 1,\n"
                    "c2, 8, 8, 3, 3, 8, 8, 1,\nc3, 6, 6, 1, 1, 8, 16, 1,\n")
    network = read_topology_csv(topo, batch=2)
    trace = make(tmp_path, network, gate_sparsity=0.6, gate_groups=2, weight_sparsity=0.5)
    assert [(i.gate is not None, i.weight is not None) for i in trace.layers] == [
        (False, False), (True, True), (True, True)]


def test_topology_defaults_skip_the_classifier_and_patterns_choose(tmp_path: Path) -> None:
    """The shipped ResNet-50 topology: SCDG 8x1x1 with G = 4 gates every layer but the stem
    and the 1000-way FC (whose 1000 / 4 channels 8 does not divide); patterns pick by name."""
    network = read_topology_csv(TOPOLOGIES / "resnet50_imagenet.csv")
    gated = gated_layers(network)
    assert [layer.name for layer in network.layers if layer not in gated] == ["conv1", "fc"]
    assert [layer.name for layer in pruned_layers(network)] == [layer.name for layer in gated]
    chosen = gated_layers(network, ("layer4.*.conv2", "fc"))
    assert [layer.name for layer in chosen] == ["layer4.0.conv2", "layer4.1.conv2",
                                                "layer4.2.conv2", "fc"]
    with pytest.raises(InputError, match=r"--gate-layers.*'layer9\*' matches no layer"):
        gated_layers(network, ("layer9*",))
    grouped = Network("g", (conv("a", 4, 8, 3, 1, 1, 8, 8, 1),
                            conv("dw", 8, 8, 3, 1, 1, 8, 8, 1, groups=8)))
    assert [layer.name for layer in pruned_layers(grouped)] == []  # left dense by default
    with pytest.raises(InputError, match=r"--prune-layers.*'dw' is a grouped conv"):
        pruned_layers(grouped, ("dw",))
    trace = make(tmp_path, network, gate_sparsity=0.5, gate_group_size=8, steps=1,
                 prune_layers=("fc",), weight_pattern="nm:2:4")
    assert trace.manifest.layers[-1].weight is not None
    assert trace.manifest.layers[-1].gate is None


def test_example_topologies_are_the_builtin_networks() -> None:
    """topologies/*.csv are scripts/make_topologies.py's output, and SCALE-Sim's reading of
    them has the built-in networks' output sizes and MACs (plus the classifier)."""
    from scripts.make_topologies import NETWORKS, render

    for name, (builtin, classes) in NETWORKS.items():
        assert (TOPOLOGIES / name).read_text() == render(builtin, classes), \
            "run scripts/make_topologies.py"
        topology = read_topology_csv(TOPOLOGIES / name)
        net = builtin_network(builtin, batch=1)
        assert [(t.h_out, t.cout) for t in topology.layers[:-1]] == [
            (layer.h_out, layer.cout) for layer in net.layers]
        assert topology.macs == net.macs + net.layers[-1].cout * classes


def test_no_masks_gives_a_dense_trace(tmp_path: Path, net: Network) -> None:
    trace = make(tmp_path, net)
    assert all(item.gate is None and item.weight is None for item in trace.layers)
    assert trace.steps == [0, 1]
    trace.verify()


# -- exact sparsity -----------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.7, 0.999])
def test_gate_and_element_weight_sparsity_is_exact(tmp_path: Path, net: Network,
                                                   sparsity: float) -> None:
    trace = make(tmp_path, net, gate_sparsity=sparsity, weight_sparsity=sparsity)
    for step in trace.steps:
        masks = {**all_gates(trace, step), **all_weights(trace, step)}
        assert masks
        for mask in masks.values():
            assert int(mask.sum()) == round_half_up((1 - sparsity) * mask.size)
    stats = trace.stats(0)
    assert stats["gate_sparsity_target"] == sparsity
    assert stats["weight_sparsity_target"] == {"1": sparsity, "2": sparsity}


def test_round_half_up_and_kept_count() -> None:
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.49)] == [1, 2, 3, 2]
    assert kept_count(0.7, 1000) == 300 and kept_count(0.0, 7) == 7
    assert kept_count(0.999, 10) == 0


def test_top_k_mask_is_exact_with_ties_and_nested() -> None:
    flat = np.zeros(10)
    assert np.array_equal(np.flatnonzero(top_k_mask(flat, 3)), [0, 1, 2])  # ties: C order
    scores = np.random.default_rng(1).integers(0, 4, size=(6, 7)).astype(float)  # many ties
    previous = np.zeros(scores.shape, bool)
    for k in range(scores.size + 1):
        mask = top_k_mask(scores, k)
        assert mask.sum() == k
        assert not (previous & ~mask).any()
        if 0 < k < scores.size:
            assert scores[mask].min() >= scores[~mask].max()
        previous = mask


# -- SCDG and base chunks -----------------------------------------------------------------------


def test_scdg_gates_are_stored_per_channel_group(tmp_path: Path, net: Network) -> None:
    s = 4
    trace = make(tmp_path, net, gate_sparsity=0.6, gate_group_size=s)
    for (name, _), mask in all_gates(trace).items():
        layer = trace.manifest.layer(name).layer
        assert mask.shape == (layer.batch, layer.cout // s, layer.h_out, layer.w_out)
        assert trace.manifest.layer(name).gate.group_size == s
        elements = np.repeat(mask, s, axis=1)  # element level (N, Cout, Ho, Wo)
        regrouped = elements.reshape(mask.shape[0], -1, s, *mask.shape[2:])
        assert (regrouped == regrouped[:, :, :1]).all()
        assert np.array_equal(regrouped[:, :, 0], mask)
        assert int(mask.sum()) == round_half_up(0.4 * mask.size)


def test_base_chunks() -> None:
    assert base_chunks(4, 0.0, 2) == [[0, 1, 2, 3], [3, 2, 1, 0]]
    assert base_chunks(4, 0.5, 2) == [[0, 1, 2, 3], [0, 1, 1, 0]]
    assert base_chunks(4, 1.0, 2) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert base_chunks(4, 0.25, 2) == [[0, 1, 2, 3], [0, 2, 1, 0]]
    assert base_chunks(4, 0.0, 1) == [[0, 1, 2, 3]]
    assert base_chunks(1, 0.5, 2) == []


@pytest.mark.parametrize(("groups", "overlap", "expected"), [
    (4, 0.0, ((0, 1, 2, 3), (3, 2, 1, 0))),
    (4, 0.5, ((0, 1, 2, 3), (0, 1, 1, 0))),
    (4, 1.0, ((0, 1, 2, 3), (0, 1, 2, 3))),
    (1, 0.0, ()),
])
def test_manifest_base_chunks(tmp_path: Path, net: Network, groups: int, overlap: float,
                              expected: tuple) -> None:
    trace = make(tmp_path, net, gate_sparsity=0.5, gate_groups=groups, overlap=overlap)
    specs = [item.gate for item in trace.layers if item.gate is not None]
    assert all(spec.gating_groups == groups and spec.base_chunks == expected for spec in specs)


def test_single_branch(tmp_path: Path, net: Network) -> None:
    trace = make(tmp_path, net, branches=1, gate_sparsity=0.5, weight_sparsity=0.5)
    assert trace.branches == 1
    gate = next(item.gate for item in trace.layers if item.gate is not None)
    assert gate.base_chunks == ((0, 1, 2, 3),)
    assert trace.stats(0)["weight_sparsity_target"] == {"1": 0.5}


# -- spatial correlation ------------------------------------------------------------------------


def test_spatial_correlation_raises_neighbour_agreement() -> None:
    shape = (4, 4, 32, 32)
    iid = gate_mask(generator(0, 0, 0, 1, "gate"), shape, 0.5, 0.0)
    smooth = gate_mask(generator(0, 0, 0, 1, "gate"), shape, 0.5, 2.0)
    assert iid.sum() == smooth.sum() == iid.size // 2
    assert abs(neighbour_agreement(iid) - 0.5) < 0.03
    assert neighbour_agreement(smooth) > 0.75


def test_spatial_correlation_through_synthesize(tmp_path: Path, net: Network) -> None:
    plain = all_gates(make(tmp_path, net, "a", gate_sparsity=0.7))
    smooth = all_gates(make(tmp_path, net, "b", gate_sparsity=0.7, spatial_correlation=1.5))
    key = ("layer1.0.conv1", 1)
    assert plain[key].sum() == smooth[key].sum()
    assert neighbour_agreement(smooth[key]) > neighbour_agreement(plain[key]) + 0.1


# -- weight patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 8), (4, 4)])
def test_nm_masks_keep_exactly_n_of_m(tmp_path: Path, net: Network, n: int, m: int) -> None:
    trace = make(tmp_path, net, weight_pattern=f"nm:{n}:{m}")
    weights = all_weights(trace)
    assert weights
    for (name, branch), mask in weights.items():
        cout, cin, kh, kw = mask.shape
        counts = mask.reshape(cout, cin // m, m, kh, kw).sum(axis=2)
        assert (counts == n).all()
        assert np.array_equal(mask, weights[(name, 3 - branch)])
        assert trace.manifest.layer(name).weight.pattern == f"nm:{n}:{m}"
    assert trace.stats(0)["weight_sparsity_target"]["1"] == pytest.approx(1 - n / m)


def test_nm_accepts_the_implied_sparsity() -> None:
    assert SynthConfig(weight_pattern="nm:2:4", weight_sparsity=0.5).weight_sparsities() == (
        0.5, 0.5)


def test_block_masks_are_constant_over_blocks(tmp_path: Path, net: Network) -> None:
    bo, bi = 4, 8
    trace = make(tmp_path, net, weight_sparsity=0.6, weight_pattern=f"block:{bo}x{bi}")
    for mask in all_weights(trace).values():
        cout, cin, kh, kw = mask.shape
        blocks = mask.reshape(cout // bo, bo, cin // bi, bi, kh * kw)
        first = blocks[:, :1, :, :1, :1]
        assert (blocks == first).all()
        count = (cout // bo) * (cin // bi)
        assert int(first.sum()) == round_half_up(0.4 * count)


@pytest.mark.parametrize("pattern", ["element", "block:2x2"])
def test_weight_delta_branch_2_contains_branch_1(tmp_path: Path, net: Network,
                                                 pattern: str) -> None:
    trace = make(tmp_path, net, weight_sparsity=0.8, weight_delta=0.3, weight_pattern=pattern)
    weights = all_weights(trace)
    for item in trace.layers:
        if item.weight is None:
            continue
        first, second = weights[(item.name, 1)], weights[(item.name, 2)]
        assert not (first & ~second).any()
        if pattern == "element":
            assert int(first.sum()) == round_half_up(0.2 * first.size)
            assert int(second.sum()) == round_half_up(0.5 * second.size)
        assert second.sum() > first.sum()
    assert trace.stats(0)["weight_sparsity_target"] == {"1": 0.8, "2": pytest.approx(0.5)}


@pytest.mark.parametrize(("every", "stored"), [(0, [0, 0, 0, 0]), (1, [0, 1, 2, 3]),
                                               (2, [0, 0, 2, 2])])
def test_weight_update_every(tmp_path: Path, net: Network, every: int, stored: list) -> None:
    trace = make(tmp_path, net, steps=4, weight_sparsity=0.5, weight_update_every=every)
    name = "layer1.0.conv1"
    assert [trace.weight_step(step, name, 1) for step in trace.steps] == stored
    assert [trace.stats(s)["weight_update"] for s in trace.steps] == [
        s == t for s, t in zip(trace.steps, stored, strict=True)]
    if every == 1:
        assert not np.array_equal(trace.weight(0, name, 1), trace.weight(1, name, 1))


def test_gates_differ_between_branches_steps_and_layers(tmp_path: Path, net: Network) -> None:
    trace = make(tmp_path, net, gate_sparsity=0.5)
    a = trace.gate(0, "layer1.0.conv1", 1)
    assert not np.array_equal(a, trace.gate(0, "layer1.0.conv1", 2))
    assert not np.array_equal(a, trace.gate(1, "layer1.0.conv1", 1))
    assert not np.array_equal(a, trace.gate(0, "layer1.0.conv2", 1))


# -- determinism and producer -------------------------------------------------------------------


def test_deterministic_bytes_and_seed_changes_masks(tmp_path: Path, net: Network) -> None:
    kwargs = {"gate_sparsity": 0.7, "gate_group_size": 2, "spatial_correlation": 1.0,
              "weight_sparsity": 0.8, "weight_delta": 0.3, "weight_update_every": 1}
    for name in ("a", "b"):
        synthesize(net, tmp_path / name, SynthConfig(seed=3, **kwargs))
    synthesize(net, tmp_path / "c", SynthConfig(seed=4, **kwargs))
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["steps/step-00000000.bin"] != c["steps/step-00000000.bin"]


def test_producer_records_the_config(tmp_path: Path, net: Network) -> None:
    config = SynthConfig(seed=5, gate_sparsity=0.5, overlap=0.5, weight_pattern="nm:2:4")
    trace = open_trace(synthesize(net, tmp_path / "t", config))
    producer = trace.manifest.producer
    assert producer["algorithm"] == "synthetic"
    assert producer["generator"] == "accelsim.trace.synth"
    assert producer["network"] == "resnet20" and producer["seed"] == 5
    assert producer["config"]["overlap"] == 0.5
    assert producer["config"]["weight_pattern"] == "nm:2:4"
    assert set(producer["config"]) == set(SynthConfig.__dataclass_fields__)
    assert trace.stats(0)["loss"] is None


def test_overwrite(tmp_path: Path, net: Network) -> None:
    synthesize(net, tmp_path / "t", SynthConfig(gate_sparsity=0.5))
    with pytest.raises(InputError, match="not empty"):
        synthesize(net, tmp_path / "t", SynthConfig(gate_sparsity=0.5))
    trace = open_trace(synthesize(net, tmp_path / "t", SynthConfig(steps=1), overwrite=True))
    assert trace.steps == [0]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"gate_sparsity": 0.5, "gate_group_size": 8},
     "layer 'layer1.0.conv1': --gate-group-size 8 must divide cout/gate-groups = 16/4 = 4"),
    ({"gate_sparsity": 0.5, "gate_groups": 3},
     "layer 'layer1.0.conv1': --gate-groups 3 must divide cin/groups=16 and cout=16"),
    ({"weight_pattern": "nm:2:32"}, "layer 'layer1.0.conv1': --weight-pattern nm:2:32: M=32"),
    ({"weight_sparsity": 0.5, "weight_pattern": "block:3x4"},
     "layer 'layer1.0.conv1': --weight-pattern block:3x4: BO=3 must divide cout=16"),
    ({"gate_sparsity": 0.5, "gate_group_size": 2, "channel_block": 4},
     "layer 'layer1.0.conv1': --channel-block 4 x --gate-group-size 2 must divide "
     "cout/gate-groups = 16/4 = 4"),
])
def test_structure_errors_name_the_layer(tmp_path: Path, net: Network, kwargs: dict,
                                         message: str) -> None:
    with pytest.raises(InputError) as caught:
        synthesize(net, tmp_path / "t", SynthConfig(**kwargs))
    assert message in str(caught.value)
    assert not (tmp_path / "t").exists()


def test_structure_error_in_a_later_layer(tmp_path: Path) -> None:
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nc1, 10, 10, 3, 3, 3, 8, 1,\n"
                    "c2, 8, 8, 3, 3, 8, 8, 1,\nc3, 6, 6, 1, 1, 8, 6, 1,\n"
                    "c4, 6, 6, 1, 1, 6, 6, 1,\n")
    config = SynthConfig(gate_sparsity=0.5, gate_groups=2, gate_group_size=2)
    with pytest.raises(InputError) as caught:
        synthesize(read_topology_csv(topo), tmp_path / "out", config)
    assert str(caught.value) == ("layer 'c3': --gate-group-size 2 must divide cout/gate-groups "
                                 "= 6/2 = 3 (and 1 more layer)")


def test_nothing_to_gate_is_an_error(tmp_path: Path) -> None:
    topo = tmp_path / "one.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nc1, 8, 8, 3, 3, 4, 8, 1,\n")
    with pytest.raises(InputError, match="no gated layer"):
        synthesize(read_topology_csv(topo), tmp_path / "t", SynthConfig(gate_sparsity=0.5))


@pytest.mark.parametrize("text", ["nm:3", "nm:5:4", "nm:0:4", "block:4", "block:0x4", "dense",
                                  "nm:2:4:1", ""])
def test_bad_weight_patterns(text: str) -> None:
    with pytest.raises(InputError, match="--weight-pattern"):
        SynthConfig(weight_sparsity=0.5, weight_pattern=text)


def test_weight_pattern_parse() -> None:
    assert WeightPattern.parse("nm:2:4") == WeightPattern("nm", n=2, m=4)
    assert WeightPattern.parse("block:4x8") == WeightPattern("block", block_out=4, block_in=8)
    assert str(WeightPattern.parse("block:4x8")) == "block:4x8"
    assert WeightPattern.parse("element").implied_sparsity is None


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"steps": 0}, "--steps"),
    ({"seed": -1}, "--seed"),
    ({"branches": 3}, "--branches"),
    ({"gate_sparsity": 1.0}, "--gate-sparsity"),
    ({"gate_sparsity": -0.1}, "--gate-sparsity"),
    ({"weight_sparsity": float("nan")}, "--weight-sparsity"),
    ({"gate_sparsity": 0.5, "overlap": 1.5}, "--overlap"),
    ({"gate_sparsity": 0.5, "gate_groups": 0}, "--gate-groups"),
    ({"gate_sparsity": 0.5, "spatial_correlation": -1.0}, "--spatial-correlation"),
    ({"gate_sparsity": 0.5, "channel_block": 0}, "--channel-block"),
    ({"channel_block": 8}, "--channel-block"),  # gate option without gate masks
    ({"overlap": 0.5}, "--overlap"),  # gate option without gate masks
    ({"gate_group_size": 8}, "--gate-group-size"),
    ({"weight_delta": 0.2}, "--weight-delta"),  # weight option without weight masks
    ({"weight_pattern": "block:4x4"}, "--weight-pattern"),
    ({"weight_sparsity": 0.3, "weight_pattern": "nm:2:4"}, "--weight-sparsity"),
    ({"weight_pattern": "nm:2:4", "weight_delta": 0.25}, "--weight-delta"),
    ({"weight_sparsity": 0.2, "weight_delta": 0.3}, "--weight-delta"),
    ({"branches": 1, "weight_sparsity": 0.5, "weight_delta": 0.3}, "--weight-delta"),
    ({"branches": 1, "gate_sparsity": 0.5, "overlap": 1.0}, "--overlap"),
])
def test_config_errors_name_the_option(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as caught:
        SynthConfig(**kwargs)
    assert caught.value.field == field


def test_the_channel_correlation_measure_tells_independent_gates_from_blocked_ones(
        tmp_path: Path) -> None:
    """scripts/make_gap_table.py --recorded: independent gates close an aligned 8-channel unit
    as often as independence predicts; gates equal over 8-channel blocks put every closed bit in
    a closed unit."""
    from accelsim.trace import TraceReader
    from scripts.make_gap_table import channel_correlation

    net = resnet20(batch=4)
    results = {}
    for block in (1, 8):
        path = tmp_path / f"block{block}"
        synthesize(net, path, SynthConfig(steps=1, gate_sparsity=0.7, gate_groups=2,
                                          channel_block=block))
        results[block] = channel_correlation(TraceReader(path))
    density, off, independent_off, closed_in_off, independent_closed = results[1]
    assert density == pytest.approx(0.3, abs=0.01)
    assert off == pytest.approx(independent_off, rel=0.05)
    assert independent_off == pytest.approx(0.7 ** 8, rel=0.05)
    assert closed_in_off == pytest.approx(independent_closed, rel=0.05)
    density, off, independent_off, closed_in_off, _ = results[8]
    assert closed_in_off == 1.0 and off == pytest.approx(0.7, abs=0.01)
    assert independent_off < off / 10
