"""Restoration networks f_θ."""

from .dncnn import DnCNN
from .factory import ModelConfig, build_model, build_unet_body, transfer_weights
from .jdd import JDDNet, build_jdd_model
from .projection import ProjectionHead
from .sr import SRNet, build_sr_model
from .unet import UNet

__all__ = ["DnCNN", "JDDNet", "ModelConfig", "ProjectionHead", "SRNet", "UNet", "build_jdd_model", "build_model",
           "build_sr_model", "build_unet_body", "transfer_weights"]
