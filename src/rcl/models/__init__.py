"""Restoration networks f_θ."""

from .dncnn import DnCNN
from .factory import ModelConfig, build_model
from .projection import ProjectionHead
from .unet import UNet

__all__ = ["DnCNN", "ModelConfig", "ProjectionHead", "UNet", "build_model"]
