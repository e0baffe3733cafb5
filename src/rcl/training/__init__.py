"""Training: the one :func:`fit`, the training loop, and the pretrain/finetune entry points."""

from .api import finetune, pretrain
from ..methods import FinetuneConfig, PretrainConfig
from .fit import FitResult, fit, labelled_subset
from .trainer import seed_everything, train

__all__ = ["FinetuneConfig", "FitResult", "PretrainConfig", "finetune", "fit", "labelled_subset", "pretrain",
           "seed_everything", "train"]
