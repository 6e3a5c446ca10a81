"""accelsim: a cycle-level model of a sparse DNN training accelerator.

`import accelsim` never imports torch: the simulator runs on machines without PyTorch.
"""

__version__ = "0.1.0"
