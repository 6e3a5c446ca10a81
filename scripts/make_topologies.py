"""Regenerate the example SCALE-Sim topology CSVs in topologies/ from the built-in networks.

    .venv/bin/python scripts/make_topologies.py

SCALE-Sim adds no padding and sizes an output ceil((IFMAP - filter + stride) / stride). Each
row's IFMAP is the layer's input plus PyTorch's padding, less the trailing rows and columns
no window of a strided conv reaches, so SCALE-Sim's output size, and every MAC, equals the
built-in network's (a test checks it). The classifier (a 1x1 filter on a 1x1 map, 1000 classes)
ends each file, as in SCALE-Sim's own topologies; `trace synth` leaves such layers unmasked by
default.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.network import TOPOLOGY_COLUMNS, Layer, builtin_network  # noqa: E402

OUT = ROOT / "topologies"
NETWORKS = {"resnet18_imagenet.csv": ("resnet18-imagenet", 1000),
            "resnet50_imagenet.csv": ("resnet50-imagenet", 1000),
            "resnet18_cifar.csv": ("resnet18", 10)}


def ifmap(size: int, layer: Layer) -> int:
    """The padded input SCALE-Sim must see for PyTorch's output size."""
    padded = size + 2 * layer.padding
    return padded - (padded - layer.kh) % layer.stride


def render(network: str, classes: int) -> str:
    """The topology CSV of the built-in ``network`` (batch 1) with a ``classes``-way FC."""
    net = builtin_network(network, batch=1)
    lines = [", ".join(TOPOLOGY_COLUMNS) + ","]
    for layer in net.layers:
        lines.append(f"{layer.name}, {ifmap(layer.h_in, layer)}, {ifmap(layer.w_in, layer)}, "
                     f"{layer.kh}, {layer.kw}, {layer.cin}, {layer.cout}, {layer.stride},")
    lines.append(f"fc, 1, 1, 1, 1, {net.layers[-1].cout}, {classes}, 1,")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (network, classes) in NETWORKS.items():
        (OUT / name).write_text(render(network, classes))
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
