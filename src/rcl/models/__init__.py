"""Restoration networks f_θ."""

from .dncnn import DnCNN
from .factory import ModelConfig, build_model
from .unet import UNet

__all__ = ["DnCNN", "ModelConfig", "UNet", "build_model"]
