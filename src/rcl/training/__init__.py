"""Training: configs, the single training loop, methods, and the pretrain/finetune entry points."""

from .api import finetune, pretrain
from .config import FinetuneConfig, PretrainConfig
from .methods import RCLPretraining, SupervisedTraining, labelled_subset
from .trainer import seed_everything, train

__all__ = ["FinetuneConfig", "PretrainConfig", "RCLPretraining", "SupervisedTraining", "finetune",
           "labelled_subset", "pretrain", "seed_everything", "train"]
