"""The RCL pre-training objective (Dong et al., 2022, arXiv 2106.10070).

    L = w_c · NT-Xent( −EMD(n̂_i, n̂_j)/τ ) + λ · L_consistency,

over 2B residual crops n̂ = c − f_θ(·) where crops i and i + B come from the same noisy image.
The choices the paper leaves open (normalisation, consistency term, weights) are documented in
docs/design.md and decided by the measurements in docs/consistency.md.
"""

from __future__ import annotations

import torch
from torch import nn

from .consistency import consistency_forward
from .ntxent import ResidualNTXent


class RCLLoss(nn.Module):
    """RCL loss. Forward: ``(model, crops (2B, C, p, p), generator) -> (loss, logs)``.

    Args:
        temperature: τ of the NT-Xent.
        contrastive_weight: w_c (0 switches the contrastive term off, for ablations).
        consistency: "blindspot", "fidelity", "recorruption" or "none".
        consistency_weight: λ.
        similarity: "emd" (RCL), "l2" or "cosine" (ablations).
        normalize: divide residuals by the batch residual std before the similarity.
        mask_ratio: masked pixel fraction of the blind-spot term.
    """

    def __init__(self, temperature: float = 0.1, contrastive_weight: float = 0.01,
                 consistency: str = "blindspot", consistency_weight: float = 1.0,
                 similarity: str = "emd", normalize: bool = True, mask_ratio: float = 0.03):
        super().__init__()
        self.contrastive = ResidualNTXent(temperature, similarity, normalize)
        self.contrastive_weight = contrastive_weight
        self.consistency, self.consistency_weight, self.mask_ratio = consistency, consistency_weight, mask_ratio

    def forward(self, model: nn.Module, crops: torch.Tensor, generator: torch.Generator | None = None):
        cons, residual = consistency_forward(self.consistency, model, crops, generator, self.mask_ratio)
        con = self.contrastive(residual)
        loss = self.contrastive_weight * con + self.consistency_weight * cons
        return loss, {"loss": float(loss.detach()), "contrastive": float(con.detach()),
                      "consistency": float(cons.detach()),
                      "residual_std": float(residual.detach().std())}
