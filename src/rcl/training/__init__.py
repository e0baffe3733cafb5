"""Training: the one :func:`fit`, the training loop and its engine (device, precision, resumable
states, torch.distributed), and the pretrain/finetune entry points."""

from .api import finetune, pretrain
from ..methods import FinetuneConfig, PretrainConfig
from .engine import DeviceError, Engine, TrainingStopped, describe_device, resolve_device
from .fit import FitResult, fit, labelled_subset
from .state import StateError
from .trainer import seed_everything, train

__all__ = ["DeviceError", "Engine", "FinetuneConfig", "FitResult", "PretrainConfig", "StateError", "TrainingStopped",
           "describe_device", "finetune", "fit", "labelled_subset", "pretrain", "resolve_device", "seed_everything",
           "train"]
