"""``ne2ne`` — Neighbor2Neighbor (Huang, Li, Jia, Lu & Liu, 2021, "Neighbor2Neighbor:
Self-Supervised Denoising from Single Noisy Images", CVPR): random neighbour sub-sampling of
``batch_size`` noisy crops (B, C, crop, crop) into two (B, C, crop/2, crop/2) sub-images, MSE
between the network's output on one and the other plus a regulariser weighted by γ
(:func:`rcl.losses.neighbor2neighbor.ne2ne_loss`). A denoiser usable with 0 labels.
"""

from __future__ import annotations

from pydantic import Field

from ..losses.neighbor2neighbor import ne2ne_loss
from .base import CropConfig, CropLossMethod, register_method


class Ne2NeConfig(CropConfig):
    """Neighbor2Neighbor pre-training: the :class:`~rcl.methods.base.CropConfig` fields (batch_size,
    crop_size, lr; ``steps`` is also the length of the γ ramp; ``seed`` seeds crops, sub-sampling
    and initial weights) and its own.

    Attributes:
        gamma: final weight γ of the regulariser (ramped linearly from 0).
    """

    gamma: float = Field(2.0, ge=0)


@register_method
class Ne2Ne(CropLossMethod, criterion=ne2ne_loss):
    """Neighbor2Neighbor with a linear γ ramp.

    γ_t = gamma · t / steps at step t (t = 1..steps, from the step's draws; the reference code sets
    γ = epoch / n_epoch · 2). Called with a plain torch.Generator (no step), the method counts its
    own calls instead.

    Raises (constructor): ValueError if an image is smaller than the crop.
    """

    name = "ne2ne"
    Config = Ne2NeConfig

    def __init__(self, data, cfg: Ne2NeConfig, **kw):
        super().__init__(data, cfg, **kw)
        self.calls = 0

    def current_gamma(self, step: int | None = None) -> float:
        """γ at ``step`` (None: the step after the calls counted so far)."""
        t = self.calls + 1 if step is None else step
        return self.cfg.gamma * min(t, self.cfg.steps) / self.cfg.steps

    def loss_parameter(self, draws) -> float:
        """γ of the step of ``draws`` (:meth:`current_gamma`); counts the call."""
        gamma = self.current_gamma(draws.step)
        self.calls += 1
        return gamma

    summed_logs = ("loss", "rec", "reg")
