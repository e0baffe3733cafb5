"""``none`` — no pre-training: the network keeps its random initialisation (seeded by ``seed``).
The baseline every pre-training is compared with (fine-tuning from scratch)."""

from __future__ import annotations

from ..configs import Seed, StrictConfig
from .base import Method, register_method


class NoneConfig(StrictConfig):
    """Attributes:
        seed: seeds the initial weights (0 ≤ seed ≤ MAX_SEED)."""

    seed: Seed = 0


@register_method
class NoPretraining(Method):
    """Random initialisation only: ``fit`` builds the network (seeded) and returns it in eval mode
    with an empty history; the method is never instantiated."""

    name = "none"
    Config = NoneConfig
    trains = False

    def objective(self, model, batch, draws):  # pragma: no cover - never called (trains is False)
        raise RuntimeError("the 'none' method does not train")

    claim_role = "scratch"
