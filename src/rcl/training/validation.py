"""Periodic validation during fine-tuning, with best-checkpoint selection.

Fine-tuning that runs long enough to converge can also run past its best point, and the last
step of a cosine schedule is not always the best one. When the labels allow it, :func:`rcl.training.fit`
holds out part of the labelled images as a validation split, scores the network on them every
``val_every`` steps through the one evaluation protocol (:func:`rcl.evaluation.evaluate`: fixed
noise per image seeded by its name, uint8 PSNR), and keeps the weights of the best score.

Our choice, not the paper's (it does not say how its fine-tuning picks a checkpoint): the
validation images come **out of the label budget**, so a run "with K labels" never sees more than
K clean images; below ``val_min_labels`` labelled images there is no validation and the last
step's weights are kept (see docs/design.md, "Validation and best-checkpoint selection").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.datasets import ImageSet
from ..data.noise import NoiseModel


def validation_split(n_labelled: int, fraction: float, min_labels: int) -> int:
    """How many of ``n_labelled`` labelled images are held out for validation.

    ``max(1, round(fraction · n))`` when ``n ≥ min_labels``, else 0 (too few labels to spare one).
    At least one image is always left for training.

    Raises:
        ValueError: ``fraction`` not in (0, 1) or ``min_labels`` < 2.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if min_labels < 2:
        raise ValueError(f"validation needs at least 2 labelled images, got min_labels={min_labels}")
    if n_labelled < min_labels:
        return 0
    return min(n_labelled - 1, max(1, round(fraction * n_labelled)))


class Validation:
    """Scores a network on fixed validation pairs; the trainer calls it every ``every`` steps.

    Args:
        task: the task (:class:`rcl.tasks.Task`): it degrades the clean images (synthetic noise)
            and scores the outputs.
        clean: clean validation images (C, H, W) in [0, 1].
        noise: the training noise model (synthetic: one realisation per image, seeded by ``seed``
            and the image's name; real: ``noisy`` must be given).
        every: validate after every ``every`` steps and after the last step (≥ 1).
        seed: the noise seed of the validation inputs.
        noisy: real noisy counterparts of ``clean`` (same names and shapes), or None.

    Calling it returns the mean PSNR (dB, uint8 protocol) of the network on the split; the
    network is left in its training mode and memory layout.
    """

    def __init__(self, task, clean: ImageSet, noise: NoiseModel | None, every: int, seed: int = 0,
                 noisy: ImageSet | None = None):
        if every < 1:
            raise ValueError(f"validation interval must be ≥ 1 step, got {every}")
        if len(clean) == 0:
            raise ValueError("an empty validation split")
        self.task, self.clean, self.noise, self.every, self.seed = task, clean, noise, every, seed
        self.noisy, self.sigmas = noisy, None
        self.names = list(clean.names)
        if noisy is None and noise is not None and task.input_is_noisy_target:
            # the protocol's fixed noisy inputs, drawn once here rather than at every validation
            self.noisy, _, self.sigmas = task.degrade(clean, noise, seed)

    def due(self, step: int, steps: int) -> bool:
        return step % self.every == 0 or step == steps

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> float:
        from ..data.noise import GaussianNoise
        from ..evaluation.protocol import evaluate, model_denoiser

        noise = self.noise if self.noise is not None else GaussianNoise(0.0)
        res, _ = evaluate({"val": model_denoiser(model)}, self.clean, noise, self.seed,
                          noisy=self.noisy, sigmas=self.sigmas, task=self.task)
        score = res["val"].mean("psnr")
        return score if math.isfinite(score) else -math.inf
