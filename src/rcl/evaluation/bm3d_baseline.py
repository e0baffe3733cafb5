"""BM3D as a classical reference denoiser (Dabov, Foi, Katkovnik & Egiazarian, 2007, "Image
Denoising by Sparse 3-D Transform-Domain Collaborative Filtering", IEEE TIP; colour version:
CBM3D, ICIP 2007), through the ``bm3d`` package (Mäkinen, Azzari & Foi, 2020; v4).

BM3D is *non-blind*: it is given the noise standard deviation σ of the image, on the same [0, 1]
intensity scale as the image (``sigma_psd``). The noisy input is passed as unclipped float, as in
the evaluation protocol; grayscale images use ``bm3d.bm3d``, RGB images ``bm3d.bm3d_rgb``
(block matching in the opponent colour space).

:func:`bm3d_reference` is BM3D under the evaluation protocol, the one definition behind the BM3D
rows of the benchmark (``DenoiseTask.classical_restorer("bm3d")``), of ``rcl evaluate --reference
bm3d`` and of ``rcl demo``: given to :func:`rcl.evaluation.evaluate` beside the networks, it
denoises the same fixed-seed noisy inputs with each image's true σ and is scored the same way
(uint8 PSNR/SSIM).

For real noise (``rcl evaluate --noisy … --clean …``) there is no true σ; two rows bound what BM3D
can do there: :func:`bm3d_oracle_reference` is given each pair's oracle σ = std(noisy − clean), which
the protocol passes for real pairs (the upper bound: a σ no user holds), and
:func:`bm3d_estimated_reference` estimates σ from the noisy image alone
(:func:`rcl.evaluation.noise_level.estimate_sigma`, the default estimator chosen on the PolyU
training scenes).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .protocol import Denoiser

BM3D_ROW = "BM3D (σ known)"
"""The name of the BM3D reference row in the tables of ``rcl evaluate --reference bm3d`` and ``rcl demo``."""
BM3D_ORACLE_ROW = "BM3D (σ = std(noisy − clean))"
"""The row of ``rcl evaluate --reference bm3d-oracle`` (real pairs)."""
BM3D_ESTIMATED_ROW = "BM3D (σ estimated)"
"""The row of ``rcl evaluate --reference bm3d-estimated``."""
MIN_ESTIMATED_SIGMA = 0.1 / 255
"""The smallest σ (on [0, 1]) :func:`bm3d_estimated_reference` gives BM3D (which needs σ > 0) when
the estimator reads less, e.g. on a noise-free image."""


def bm3d_denoise(noisy: torch.Tensor, sigma: float, profile: str = "np") -> torch.Tensor:
    """Denoise one image with BM3D / CBM3D.

    Args:
        noisy: (C, H, W) float image, C = 1 or 3, values ~[0, 1] plus noise (not clipped).
        sigma: noise std on the [0, 1] scale (> 0).
        profile: bm3d profile ("np" = the package's default "normal profile").

    Returns:
        (C, H, W) float32 tensor (not clipped), on the input's device.

    Raises:
        ValueError: not 1 or 3 channels, or σ not a positive finite number.
    """
    import bm3d  # imported lazily: the compiled library takes a moment to load

    if noisy.ndim != 3 or noisy.shape[0] not in (1, 3):
        raise ValueError(f"BM3D takes a (1 or 3, H, W) image, got shape {tuple(noisy.shape)}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"BM3D needs the noise level σ > 0 on the [0, 1] scale, got {sigma}")
    z = noisy.detach().cpu().double().numpy()
    if z.shape[0] == 1:
        out = np.asarray(bm3d.bm3d(z[0], sigma_psd=float(sigma), profile=profile))[None]
    else:
        out = np.asarray(bm3d.bm3d_rgb(np.ascontiguousarray(z.transpose(1, 2, 0)), sigma_psd=float(sigma),
                                       profile=profile)).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(noisy.device)


def bm3d_denoiser(sigma_override: float | None = None, profile: str = "np") -> Denoiser:
    """BM3D as a :data:`rcl.evaluation.protocol.Denoiser`: ``fn(noisy (C, H, W), σ) → (C, H, W)``.

    Args:
        sigma_override: σ on the [0, 1] scale to use instead of the one the protocol passes
            (e.g. for real noise, where the protocol's σ is nan).
        profile: bm3d profile.

    The returned function raises ValueError when it gets no usable σ (nan and no override).
    """

    def denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        s = sigma if sigma_override is None else sigma_override
        return bm3d_denoise(noisy, float(s), profile)

    return denoise


def check_known_sigma(noise) -> None:
    """BM3D is non-blind: it needs the σ of each image's additive white Gaussian noise, which the
    protocol passes for ``gaussian:SIGMA`` (:class:`rcl.data.noise.GaussianNoise`, σ > 0) and
    ``gaussian:MIN-MAX`` (:class:`rcl.data.noise.GaussianRangeNoise`, σ drawn per image).

    Args:
        noise: a :class:`rcl.data.noise.NoiseModel`.

    Raises:
        ValueError: any other noise, naming it: Poisson and Poisson-Gaussian noise are
            signal-dependent (their per-image σ is only an average over the image), real noise has
            no known σ; or Gaussian noise of σ = 0 (nothing to denoise).
    """
    from ..data.noise import SCALE, GaussianNoise, GaussianRangeNoise

    if isinstance(noise, GaussianNoise):
        if noise.sigma <= 0:
            raise ValueError(f"BM3D needs a noise level σ > 0, got {noise.describe()}")
        return
    if isinstance(noise, GaussianRangeNoise):
        if noise.sigma_max <= 0:
            raise ValueError(f"BM3D needs a noise level σ > 0, got σ ≤ {noise.sigma_max * SCALE:g}/255")
        return
    raise ValueError(f"BM3D needs the σ of each image's additive white Gaussian noise (gaussian:SIGMA or "
                     f"gaussian:MIN-MAX); {noise.describe()} has none")


def _task_bm3d(task, profile: str) -> Denoiser:
    try:
        return task.classical_restorer("bm3d", profile=profile)
    except ValueError:
        raise ValueError(f"BM3D is a reference for denoising models, not for a {task.describe()} "
                         f"model") from None


def bm3d_reference(task, noise, profile: str = "np") -> Denoiser:
    """BM3D under the evaluation protocol: the restorer to pass to :func:`rcl.evaluation.evaluate`
    beside the networks of a denoising task (the task's ``classical_restorer("bm3d")``, as in the
    benchmark), after checking that ``task`` and ``noise`` give it what it needs.

    Args:
        task: a :class:`rcl.tasks.Task`; it must offer BM3D among its network-free restorers
            (denoising does; SR and JDD do not).
        noise: the protocol's synthetic noise model (:func:`check_known_sigma`).
        profile: bm3d profile ("np" = normal, the benchmark's default).

    Returns:
        a :data:`rcl.evaluation.protocol.Denoiser` ``(noisy (C, H, W), σ on [0, 1]) → (C, H, W)``;
        C = 1 runs ``bm3d.bm3d``, C = 3 ``bm3d.bm3d_rgb`` (CBM3D).

    Raises:
        ValueError: a task without BM3D (e.g. an SR or JDD model), or noise without a known
            per-image σ (:func:`check_known_sigma`).
    """
    restorer = _task_bm3d(task, profile)
    check_known_sigma(noise)
    return restorer


def bm3d_oracle_reference(task, noise, profile: str = "np") -> Denoiser:
    """BM3D / CBM3D given each real pair's oracle σ = std(noisy − clean) over all pixels and channels
    (:func:`rcl.evaluation.noise_level.oracle_sigma`): the σ the evaluation protocol passes for real
    pairs (:func:`rcl.evaluation.evaluate` with ``noisy=`` and real noise). An upper bound: no user
    holds the clean image; and noisy − clean of a real pair also holds the reference's residual noise
    and any shot-to-shot mismatch.

    Args:
        task: a denoising :class:`rcl.tasks.Task`.
        noise: the protocol's noise model; must be real (:class:`rcl.data.noise.RealNoise`).

    Returns:
        a :data:`rcl.evaluation.protocol.Denoiser` ``(noisy (C, H, W), σ on [0, 1]) → (C, H, W)``.

    Raises:
        ValueError: a task without BM3D; synthetic noise (its σ is known: use :func:`bm3d_reference`).
    """
    restorer = _task_bm3d(task, profile)
    if noise.synthetic:
        raise ValueError(f"the oracle σ = std(noisy − clean) is for real noisy/clean pairs; with {noise.describe()} "
                         f"the true σ is known (use bm3d)")
    return restorer


def bm3d_estimated_reference(task, estimator: str | None = None, profile: str = "np") -> Denoiser:
    """BM3D / CBM3D given σ̂ estimated from each noisy image alone
    (:func:`rcl.evaluation.noise_level.estimate_sigma`; σ̂ below :data:`MIN_ESTIMATED_SIGMA` is raised
    to it), for real pairs or any synthetic noise. The σ̂ it used, image by image on [0, 1], are
    appended to the returned function's ``sigmas_used`` list.

    Args:
        task: a denoising :class:`rcl.tasks.Task`.
        estimator: a name of :data:`rcl.evaluation.noise_level.ESTIMATORS` (default: the
            module's ``DEFAULT_ESTIMATOR``).

    Returns:
        a :data:`rcl.evaluation.protocol.Denoiser` that ignores the σ it is passed.

    Raises:
        ValueError: a task without BM3D; an unknown estimator.
    """
    from .noise_level import DEFAULT_ESTIMATOR, ESTIMATORS, estimate_sigma

    restorer = _task_bm3d(task, profile)
    estimator = DEFAULT_ESTIMATOR if estimator is None else estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown noise-level estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    used: list[float] = []

    def denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        s = max(estimate_sigma(noisy, estimator), MIN_ESTIMATED_SIGMA)
        used.append(s)
        return restorer(noisy, s)

    denoise.sigmas_used = used
    denoise.estimator = estimator
    return denoise
