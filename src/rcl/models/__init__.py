"""Restoration networks f_θ."""

from .dncnn import DnCNN
from .factory import ModelConfig, build_model
from .projection import ProjectionHead
from .sr import JDDNet, SRNet, build_jdd_model, build_sr_model
from .unet import UNet

__all__ = ["DnCNN", "JDDNet", "SRNet", "build_jdd_model", "build_sr_model", "ModelConfig", "ProjectionHead", "UNet", "build_model"]
