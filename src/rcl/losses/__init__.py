"""Losses: EMD, residual NT-Xent, consistency terms, RCL, supervised reconstruction."""

from .consistency import CONSISTENCY_VARIANTS, consistency_forward, permute_pixels
from .emd import emd, pairwise_emd
from .masking import n2v_mask
from .ntxent import FeatureNTXent, ResidualNTXent, nt_xent_from_logits
from .rcl import RCLLoss
from .neighbor2neighbor import ne2ne_loss, neighbor_subsample
from .noise2self import n2s_loss, n2s_mask
from .noise2void import n2v_loss
from .supervised import reconstruction_loss

__all__ = ["CONSISTENCY_VARIANTS", "FeatureNTXent", "RCLLoss", "ResidualNTXent", "consistency_forward",
           "emd", "n2s_loss", "n2s_mask", "n2v_loss", "n2v_mask", "ne2ne_loss", "neighbor_subsample", "nt_xent_from_logits", "pairwise_emd", "permute_pixels", "reconstruction_loss"]
