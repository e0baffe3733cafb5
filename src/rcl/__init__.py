"""rcl: Residual Contrastive Learning for label-efficient image restoration."""

__version__ = "0.1.0"
