"""``simclr`` — SimCLR (Chen, Kornblith, Norouzi & Hinton, 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", ICML) on the restoration network's encoder.

Each step draws ``batch_images`` noisy images and two views of each (random crop + dihedral
transform + :func:`color_jitter`), 2B crops (2B, C, crop, crop); the bottleneck features
``model.features(·)[0]`` are average-pooled and projected to 64 dims by a
:class:`rcl.models.projection.ProjectionHead`, and :class:`rcl.losses.FeatureNTXent`
(cosine / τ) contrasts them. The network it trains is an encoder, not a restorer (0 labels:
not usable; it is an initialisation for fine-tuning).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from ..configs import MAX_STEPS, Seed, StrictConfig, check_batch_pixels
from ..data.datasets import contrastive_batch
from ..losses.ntxent import FeatureNTXent
from ..models.projection import ProjectionHead, project
from .base import Method, check_crop, register_method

# SimCLR's colour jitter, kept mild: per view, x' = (x − mean(x))·c + mean(x) + b with
# c ~ U[1 − CONTRAST_JITTER, 1 + CONTRAST_JITTER] and b ~ U[−BRIGHTNESS_JITTER, BRIGHTNESS_JITTER].
CONTRAST_JITTER = 0.2
BRIGHTNESS_JITTER = 0.1
PROJECTION_DIM = 64


class SimCLRConfig(StrictConfig):
    """SimCLR pre-training.

    Attributes:
        steps: optimisation steps.
        crop_size: side of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % by the trainer).
        seed: seeds crops, jitter, head and initial weights (0 ≤ seed ≤ MAX_SEED).
        temperature: τ of the NT-Xent.
        batch_images: distinct images per batch (two views each).
    """

    steps: int = Field(800, ge=1, le=MAX_STEPS)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    seed: Seed = 0
    temperature: float = Field(0.1, gt=0)
    batch_images: int = Field(16, ge=2)

    @model_validator(mode="after")
    def _batch_fits(self):
        check_batch_pixels(2 * self.batch_images, self.crop_size, "2 × batch_images × crop_size²")
        return self


def color_jitter(x: torch.Tensor, generator: torch.Generator | None = None,
                 contrast: float = CONTRAST_JITTER, brightness: float = BRIGHTNESS_JITTER) -> torch.Tensor:
    """Mild per-image brightness/contrast jitter of a batch (N, C, H, W) (values ~[0, 1], not clipped);
    a weak form of SimCLR's colour distortion (Chen et al., 2020, Sec. 3 and App. A).

    x' = (x − mean) · c + mean + b, with c ~ U[1 − contrast, 1 + contrast] and b ~ U[−brightness,
    brightness] drawn per image (shared by its channels); the mean is over the image's pixels.
    """
    from ..data.draws import as_draws

    draws = as_draws(generator)
    n = x.shape[0]
    c = 1 + contrast * (2 * draws.sample_rand(n, 1, 1, 1) - 1)
    b = brightness * (2 * draws.sample_rand(n, 1, 1, 1) - 1)
    c, b = c.to(x), b.to(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean + b


@register_method
class SimCLR(Method):
    """SimCLR on the network's bottleneck features.

    The projection head (``model.feature_channels`` → 64) is built in the constructor, i.e. after
    the network (it draws from torch's global RNG), on the network's device; it is trained with
    the network through :meth:`extra_parameters`.

    Raises (constructor):
        ValueError: fewer than 2 images or an image smaller than the crop.
    """

    name = "simclr"
    min_images = 2
    Config = SimCLRConfig

    def __init__(self, data, cfg: SimCLRConfig, *, model: nn.Module, proj_dim: int = PROJECTION_DIM, **kw):
        if len(data) < 2:
            raise ValueError("SimCLR pre-training needs at least 2 noisy images (negatives come from other images)")
        check_crop(data, cfg.crop_size)
        super().__init__(data, cfg, model=model, **kw)
        self.head = ProjectionHead(model.feature_channels, proj_dim)
        self.head.to(next(model.parameters()).device)
        self.criterion = FeatureNTXent(cfg.temperature)

    def extra_parameters(self) -> list[nn.Parameter]:
        """The projection head's parameters (trained together with the model)."""
        return list(self.head.parameters())

    def layout(self) -> tuple[int, int]:
        """Two views of ``min(batch_images, len(data))`` images."""
        return 2, min(self.cfg.batch_images, len(self.source))

    def batch(self, draws):
        return (contrastive_batch(self.source, self.cfg.batch_images, self.cfg.crop_size, draws)[0],)

    def objective(self, model: nn.Module, batch, draws):
        views = color_jitter(batch[0], draws)
        z = project(model, self.head, views)
        loss = self.criterion(z)
        return loss, {"loss": loss.detach()}

    claim_role = "contrastive"
