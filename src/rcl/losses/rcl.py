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
    """RCL loss. Forward: ``(model, crops (2b, C, p, p), draws) -> (loss, logs)``: this rank's two
    views of its b images ([view 1, view 2]); ``draws`` a :class:`rcl.data.draws.Draws` (or a
    torch.Generator). The loss is the global batch's (this rank's contribution under
    torch.distributed, negatives gathered from every rank); logs are detached tensors
    ("residual_std": the global batch's residual std).

    Args:
        temperature: τ of the NT-Xent.
        contrastive_weight: w_c (0 switches the contrastive term off, for ablations).
        consistency: "blindspot", "fidelity", "recorruption" or "none".
        consistency_weight: λ.
        similarity: "emd" (RCL), "l2" or "cosine" (ablations).
        normalize: divide residuals by the batch residual std before the similarity.
        mask_ratio: masked pixel fraction of the blind-spot term.
        gather_distributed: negatives from every rank under torch.distributed.
        pd_stride: PD stride s ≥ 1 of the blind-spot term (1: none; see
            :func:`rcl.losses.consistency.consistency_forward`); the contrastive term sees the
            residual of the PD'd pass, put back into the crops' pixel order.
        neighbor_gamma: final γ of the ``neighbor`` term, ramped as γ·progress.
        contrastive_warmup: w_c ramps linearly from 0 over this fraction of the run (0: none).
        center: subtract each residual crop's per-channel mean before the similarity.

    ``progress`` (forward): the step's fraction t/T of the run in (0, 1], for the ramps; None (no
    step known): the full weights.

    Raises:
        ValueError: ``pd_stride`` not an integer ≥ 1, or > 1 with another consistency than blindspot.
    """

    def __init__(self, temperature: float = 0.1, contrastive_weight: float = 0.01,
                 consistency: str = "blindspot", consistency_weight: float = 1.0,
                 similarity: str = "emd", normalize: bool = True, mask_ratio: float = 0.03,
                 gather_distributed: bool = True, pd_stride: int = 1, neighbor_gamma: float = 2.0,
                 contrastive_warmup: float = 0.0, center: bool = False):
        super().__init__()
        if isinstance(pd_stride, bool) or not isinstance(pd_stride, int) or pd_stride < 1:
            raise ValueError(f"pd_stride must be an integer >= 1, got {pd_stride!r}")
        if pd_stride != 1 and consistency != "blindspot":
            raise ValueError(f"pd_stride {pd_stride} needs the blindspot consistency term (got {consistency!r})")
        self.pd_stride = pd_stride
        if not 0 <= contrastive_warmup <= 1:
            raise ValueError(f"contrastive_warmup must be in [0, 1], got {contrastive_warmup}")
        self.contrastive = ResidualNTXent(temperature, similarity, normalize, gather_distributed, center=center)
        self.contrastive_weight, self.contrastive_warmup = contrastive_weight, contrastive_warmup
        self.neighbor_gamma = neighbor_gamma
        self.consistency, self.consistency_weight, self.mask_ratio = consistency, consistency_weight, mask_ratio

    def weights(self, progress: float | None) -> tuple[float, float]:
        """``(w_c, γ)`` at ``progress`` t/T (None: the full weights)."""
        p = 1.0 if progress is None else float(progress)
        w = self.contrastive_weight
        if self.contrastive_warmup > 0:
            w *= min(1.0, p / self.contrastive_warmup)
        return w, self.neighbor_gamma * p

    def forward(self, model: nn.Module, crops: torch.Tensor, generator=None, progress: float | None = None):
        w, gamma = self.weights(progress)
        cons, residual = consistency_forward(self.consistency, model, crops, generator, self.mask_ratio,
                                             self.pd_stride, gamma)
        con, std = self.contrastive.forward_with_std(residual)
        loss = w * con + self.consistency_weight * cons
        return loss, {"loss": loss.detach(), "contrastive": con.detach(), "consistency": cons.detach(),
                      "residual_std": std}
