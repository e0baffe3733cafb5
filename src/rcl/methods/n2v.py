"""``n2v`` — Noise2Void (Krull, Buchholz & Jug, 2019, "Noise2Void — Learning Denoising from Single
Noisy Images", CVPR): masked-pixel MSE with random-neighbour replacement
(:func:`rcl.losses.noise2void.n2v_loss`) on ``batch_size`` noisy crops (B, C, crop, crop);
independent masks per channel. A blind-spot denoiser usable with 0 labels. ``pd_stride`` > 1
masks and trains on pixel-shuffle down-sampled crops (for spatially correlated noise; see
:class:`rcl.methods.rcl.PDConfig`).
"""

from __future__ import annotations

from pydantic import Field

from ..losses.noise2void import n2v_loss
from .base import CropConfig, CropLossMethod, register_method
from .rcl import PDConfig, PDPredictor, check_pd_network


class N2VConfig(CropConfig, PDConfig):
    """Noise2Void pre-training: the :class:`~rcl.methods.base.CropConfig` fields (steps,
    batch_size, crop_size, lr; ``seed`` seeds crops, masks and initial weights), the PD fields of
    :class:`~rcl.methods.rcl.PDConfig` (``pd_stride``, ``pd_stride_inference``) and its own.

    Attributes:
        mask_ratio: masked pixel fraction, 0 < r < 1.
    """

    mask_ratio: float = Field(0.03, gt=0, lt=1)


@register_method
class N2V(PDPredictor, CropLossMethod, criterion=n2v_loss, parameter="mask_ratio"):
    """Noise2Void. Raises (constructor) ValueError if an image is smaller than the crop, or PD
    sub-images are smaller than the network's minimum input."""

    name = "n2v"
    Config = N2VConfig

    def __init__(self, data, cfg: N2VConfig, **kw):
        check_pd_network(cfg, kw["model"])
        super().__init__(data, cfg, **kw)

    def objective(self, model, batch, draws):
        return n2v_loss(model, batch[0], self.cfg.mask_ratio, draws, pd_stride=self.cfg.pd_stride)
