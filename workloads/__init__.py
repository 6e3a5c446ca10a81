"""PyTorch workloads: gated and pruned ResNets trained with SimCLR / BYOL / MoCo; traces."""
