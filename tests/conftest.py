"""Shared test settings: keep torch on one thread (the suite runs many tiny ops; threads only add overhead)."""

import torch

torch.set_num_threads(1)
