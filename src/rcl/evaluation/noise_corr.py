"""Spatial autocorrelation of a noise residual: is the noise pixel-independent?

Blind-spot training (Noise2Void, Noise2Self, RCL's blind-spot consistency) assumes the noise of
neighbouring pixels is independent. Real sRGB noise is not: demosaicking, denoising and JPEG in
the camera spread each pixel's noise over its neighbours. This module measures by how much, on a
residual r (noisy − clean, or noisy − f(noisy) for a denoiser f), and how much pixel-shuffle
down-sampling (PD, :mod:`rcl.data.pd`) with stride s removes.

Definition, for one image residual r of shape (C, H, W) and a PD stride s:

1. The image is **cropped** to ⌊H/s⌋·s × ⌊W/s⌋·s (bottom/right; at most s − 1 rows and columns
   are left out) and split into its s² PD sub-images, so that no pixel is counted twice (PD's
   replicate padding would duplicate pixels).
2. In every sub-image m and channel c, the mean is removed: z = r − mean(r).
3. For channel c and lag k, horizontally

       ρ_c(k) = [Σ_m Σ_{i,j} z[i, j] · z[i, j + k] / #pairs] / [Σ_m Σ_{i,j} z[i, j]² / #pixels],

   the mean product of pixels k apart *within* the sub-images (k·s apart in the image) over the
   mean square, so ρ_c(0) = 1; vertically the same with z[i + k, j].
4. The channels are averaged; a channel whose residual is constant (no noise) has no
   correlation and is left out of the average.

With s = 1 this is the usual sample autocorrelation at lags 1, 2, 3. White noise gives ≈ 0 at
every lag; Gaussian noise blurred by a 3×3 box kernel gives 2/3, 1/3, 0 at lags 1, 2, 3 (the
kernel's autocorrelation), 1/3 at lag 1 after PD with stride 2 and 0 with stride 3 (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..data.pd import pd_down

__all__ = ["DEFAULT_LAGS", "NoiseCorrelation", "noise_autocorrelation"]

DEFAULT_LAGS = (1, 2, 3)


@dataclass(frozen=True)
class NoiseCorrelation:
    """Autocorrelation of one residual at ``lags`` (pixels within the PD sub-images) for PD ``stride``.

    Attributes:
        horizontal / vertical: one value per lag, averaged over the channels.
        channels: how many channels entered the average (constant channels are left out).
    """

    stride: int
    lags: tuple[int, ...]
    horizontal: tuple[float, ...]
    vertical: tuple[float, ...]
    channels: int

    @property
    def mean(self) -> tuple[float, ...]:
        """(horizontal + vertical) / 2 at each lag."""
        return tuple((h + v) / 2 for h, v in zip(self.horizontal, self.vertical))

    def to_dict(self) -> dict:
        return {"stride": self.stride, "lags": list(self.lags), "horizontal": list(self.horizontal),
                "vertical": list(self.vertical), "mean": list(self.mean), "channels": self.channels}


def _check_int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def noise_autocorrelation(residual: torch.Tensor, lags: Sequence[int] = DEFAULT_LAGS,
                          stride: int = 1) -> NoiseCorrelation:
    """Spatial autocorrelation of one residual image (see the module docstring for the definition).

    Args:
        residual: (C, H, W) or (H, W), any float or integer dtype (computed in float64).
        lags: positive pixel lags within the sub-images (lag k is k·stride pixels in the image).
        stride: PD stride s ≥ 1 (1: no PD).

    Returns:
        :class:`NoiseCorrelation` with the horizontal and vertical correlation at each lag.

    Raises:
        ValueError: a bad shape, lag or stride; sub-images no larger than the largest lag
            (⌊H/s⌋ or ⌊W/s⌋ ≤ max lag); a residual that is constant in every channel, or that has
            NaN or infinite values.
    """
    s = _check_int(stride, "PD stride", 1)
    lags = tuple(_check_int(k, "lag", 1) for k in lags)
    if not lags:
        raise ValueError("give at least one lag")
    r = residual
    if r.ndim == 2:
        r = r.unsqueeze(0)
    if r.ndim != 3:
        raise ValueError(f"residual must be (C, H, W) or (H, W), got shape {tuple(residual.shape)}")
    c, h, w = r.shape
    sh, sw = h // s, w // s
    if min(sh, sw) <= max(lags):
        raise ValueError(f"a {w}×{h} px residual is too small for PD stride {s} and lag {max(lags)} "
                         f"(sub-images of {sw}×{sh} px; need more than {max(lags)} px each way)")
    x = r[:, : sh * s, : sw * s].to(torch.float64)
    if not bool(torch.isfinite(x).all()):  # before the variance test: NaN is not "constant"
        raise ValueError("the residual has NaN or infinite values (a network whose output overflows: "
                         "weights out of range?)")
    z = pd_down(x.unsqueeze(0), s)  # (s², C, sh, sw)
    z = z - z.mean(dim=(-2, -1), keepdim=True)
    var = (z * z).mean(dim=(0, 2, 3))  # per channel
    keep = var > 0
    if not bool(keep.any()):
        raise ValueError("the residual is constant: there is no noise to correlate")
    hor, ver = [], []
    for k in lags:
        ph = (z[..., :, :-k] * z[..., :, k:]).mean(dim=(0, 2, 3))
        pv = (z[..., :-k, :] * z[..., k:, :]).mean(dim=(0, 2, 3))
        hor.append(float((ph[keep] / var[keep]).mean()))
        ver.append(float((pv[keep] / var[keep]).mean()))
    return NoiseCorrelation(stride=s, lags=lags, horizontal=tuple(hor), vertical=tuple(ver),
                            channels=int(keep.sum()))
