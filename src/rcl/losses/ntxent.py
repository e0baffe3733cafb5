"""NT-Xent / InfoNCE over a batch of 2B views (Chen et al., 2020, SimCLR, Eq. 1; Oord et al., 2018).

Views i and i+B (mod 2B) are a positive pair; all other views except i itself are negatives:

    ℓ_i = −log( exp(s_{i,p(i)}) / Σ_{k≠i} exp(s_{i,k}) ),   L = mean_i ℓ_i,

where s is a (2B, 2B) logit matrix (already divided by the temperature τ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """NT-Xent loss of a (2B, 2B) logit matrix whose positive of row i is column (i + B) mod 2B.

    Raises:
        ValueError: the matrix is not square with an even size ≥ 4 (at least two instances).
    """
    n = logits.shape[0]
    if logits.ndim != 2 or logits.shape[1] != n or n % 2 or n < 4:
        raise ValueError(f"need a square logit matrix of even size >= 4, got {tuple(logits.shape)}")
    b = n // 2
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = (torch.arange(n, device=logits.device) + b) % n
    return F.cross_entropy(logits, target)


class ResidualNTXent(nn.Module):
    """RCL's instance-discrimination loss on residuals (Dong et al., 2022, arXiv 2106.10070).

    Logits s_ij = −EMD(n̂_i, n̂_j)/τ between residual crops; NT-Xent over the 2B crops.

    Args:
        temperature: τ > 0.
        similarity: "emd" (RCL), or the ablations "l2" (negative mean squared pixel difference) and
            "cosine" (cosine similarity of the flattened residuals, SimCLR-style).
        normalize: divide all residuals by the batch's residual std before comparing, which makes
            the loss invariant to a global rescaling of the residuals (our choice; without it the
            loss rewards inflating the residuals, see docs/design.md).

    Forward: residuals (2B, C, p, p), crop i and i + B from the same image → scalar loss.
    """

    def __init__(self, temperature: float = 0.1, similarity: str = "emd", normalize: bool = True):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if similarity not in ("emd", "l2", "cosine"):
            raise ValueError(f"similarity must be emd, l2 or cosine, got {similarity!r}")
        self.temperature, self.similarity, self.normalize = temperature, similarity, normalize

    def logits(self, residuals: torch.Tensor) -> torch.Tensor:
        """The (2B, 2B) logit matrix s/τ."""
        from .emd import pairwise_emd

        r = residuals
        if self.normalize:
            r = r / (r.std() + 1e-8)
        if self.similarity == "emd":
            sim = -pairwise_emd(r)
        elif self.similarity == "l2":
            flat = r.flatten(1)
            sim = -torch.cdist(flat.unsqueeze(0), flat.unsqueeze(0))[0] ** 2 / flat.shape[1]
        else:
            flat = F.normalize(r.flatten(1), dim=1)
            sim = flat @ flat.T
        return sim / self.temperature

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        return nt_xent_from_logits(self.logits(residuals))


class FeatureNTXent(nn.Module):
    """SimCLR's NT-Xent on feature vectors (Chen et al., 2020, Eq. 1): cosine similarity / τ.

    Forward: projections (2B, D), rows i and i + B are two views of one image → scalar loss.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z, dim=1)
        return nt_xent_from_logits(z @ z.T / self.temperature)
