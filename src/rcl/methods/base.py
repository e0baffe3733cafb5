"""The :class:`Method` base and the method registry.

A method is one way of training a network: its own validated config (:attr:`Method.Config`), the
batch it draws (:meth:`Method.batch`, pure data: it may run in a DataLoader worker) and its loss on
that batch (:meth:`Method.objective`), both from the step's :class:`rcl.data.draws.Draws` (the
protocol of :func:`rcl.training.trainer.train`), traits that callers use instead of comparing names, and the
way a network it trained restores an image (:meth:`Method.predictor`). Every method is run by
:func:`rcl.training.fit.fit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

import torch
from pydantic import Field, model_validator
from torch import nn

from ..configs import MAX_STEPS, Seed, StrictConfig, check_batch_pixels
from ..data.datasets import ImageSet, as_source, crop_batch
from ..data.draws import Draws, as_draws
from ..data.noise import NoiseModel
from ..registry import lookup, register

if TYPE_CHECKING:  # pragma: no cover
    from ..tasks.base import Task

Predictor = Callable[[torch.Tensor, float], torch.Tensor]
"""(input (C, H, W), σ on [0, 1] or nan) → restored image; the protocol's ``Denoiser``."""


class Method:
    """Base of every training method.

    Attributes:
        name: registry key.
        Config: the method's pydantic config (``steps``, ``lr``, ``seed`` and its own fields;
            unknown fields are refused).
        trains: False for a method that only initialises the network (``none``).
        zero_label: the network it trains is a usable restorer without any label (rcl, n2v, n2s,
            ne2ne).
        supervised: needs clean targets (fine-tuning); ``fit`` then draws the labelled subset.
        min_images: distinct decodable images a step needs (RCL, SimCLR: 2, their negatives come
            from other images); a file-backed source stops training with an error when skipping
            corrupt files leaves fewer.

    Args (of the constructor, called by ``fit`` after the network is built):
        data: the training images: the noisy collection (self-supervised) or the labelled clean
            images (supervised), (C, H, W) each.
        cfg: an instance of :attr:`Config`.
        task: the :class:`rcl.tasks.Task` being trained for.
        model: the network about to be trained (e.g. for its feature size or device).
        noise: the synthetic noise model (supervised: degrades clean crops on the fly).
        inputs: fixed inputs aligned with ``data`` (supervised: real pairs or fixed realisations).
    """

    name: ClassVar[str]
    Config: ClassVar[type[StrictConfig]]
    trains: ClassVar[bool] = True
    zero_label: ClassVar[bool] = False
    supervised: ClassVar[bool] = False
    min_images: ClassVar[int] = 1

    def __init__(self, data: ImageSet, cfg, *, task: "Task", model: nn.Module,
                 noise: NoiseModel | None = None, inputs: ImageSet | None = None):
        self.data, self.cfg, self.task, self.noise, self.inputs = data, cfg, task, noise, inputs
        self.device = _device_of(model)
        self.source = as_source(data, self.device)
        if hasattr(self.source, "min_decodable"):  # file-backed: corrupt files are found while training
            self.source.min_decodable = self.min_images

    # -- the step: batch (data only) then objective (on the training device)

    def layout(self) -> tuple[int, int] | None:
        """``(k, n)``: a step's global batch is n samples and the local batch k groups of this rank's
        share (RCL and SimCLR: two views of n images; crop methods and supervised: one group of
        ``batch_size`` crops). None (a config without ``batch_size``): one rank only."""
        n = getattr(self.cfg, "batch_size", None)
        return (1, n) if n is not None else None

    def batch(self, draws: Draws) -> tuple[torch.Tensor, ...]:
        """This rank's share of the step's global batch, drawn from ``draws`` (stream "batch")."""
        raise NotImplementedError

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...], draws: Draws
                  ) -> tuple[torch.Tensor, dict]:
        """``(scalar loss, logs)`` on ``batch``; further draws (masks, noise) from ``draws`` (stream
        "loss"). The loss is this rank's contribution to the global batch's loss (the loss itself
        on one rank); logs are detached tensors or floats and hold "loss"."""
        raise NotImplementedError

    summed_logs: ClassVar[tuple[str, ...]] = ("loss",)
    """Logs that are per-rank contributions, summed over ranks by the trainer; the others are the
    same on every rank."""

    def loss(self, model: nn.Module, draws: "Draws | torch.Generator | None") -> tuple[torch.Tensor, dict]:
        """:meth:`objective` on :meth:`batch`, both from ``draws`` (a plain torch.Generator is
        accepted: one rank, every draw from it, in order)."""
        if isinstance(draws, Draws):
            batch_draws = draws
            loss_draws = Draws(draws.seed, draws.step, "loss", draws.device, draws.rank, draws.world,
                               layout=self.layout())
        else:
            batch_draws = loss_draws = as_draws(draws)
        return self.objective(model, self.batch(batch_draws), loss_draws)

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the network (e.g. SimCLR's projection head); none by default."""
        return []

    @classmethod
    def predictor(cls, model: nn.Module, cfg=None) -> Predictor:
        """How a network trained by this method restores an image: a plain forward pass
        (:func:`rcl.evaluation.protocol.model_denoiser`) unless the method says otherwise."""
        from ..evaluation.protocol import model_denoiser

        return model_denoiser(model)


    # -- traits read by the benchmark (rcl.benchmark): callers never compare method names

    claim_role: ClassVar[str | None] = None
    """The method's part in the paper's claims (:mod:`rcl.benchmark.claims`): ``"ours"`` (rcl),
    ``"scratch"`` (none: no pre-training), ``"self-supervised"`` (the denoising baselines n2v, n2s,
    ne2ne), ``"contrastive"`` (simclr); None: in no claim. A method that is not "ours" also reads
    the benchmark's shared ``pretrain.baselines`` fields that its :attr:`Config` declares."""

    predictor_name: ClassVar[str] = "forward"
    """How :meth:`predictor` restores an image, in words ("forward": a plain forward pass)."""

    @classmethod
    def predictor_id(cls, cfg=None) -> str | None:
        """What :meth:`predictor` computes beyond a plain forward pass, with the config fields it
        reads (part of the benchmark's evaluation-cell hashes); None for the plain forward pass."""
        return None

METHODS: dict[str, type[Method]] = {}
"""Registered methods: name → class (rcl, simclr, n2v, n2s, ne2ne, none, supervised, then any added)."""


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a :class:`Method` subclass to :data:`METHODS` under ``cls.name``.

    Raises:
        TypeError: not a Method subclass with a name and a Config.
        ValueError: another class is registered under that name.
    """
    return register(METHODS, cls, Method, "method", "register_method", check=_check_config)


def _check_config(cls: type[Method]) -> None:
    if not (isinstance(getattr(cls, "Config", None), type) and issubclass(cls.Config, StrictConfig)):
        raise TypeError(f"method {cls.name!r}: Config must be a StrictConfig subclass")


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the known methods).
    """
    return lookup(METHODS, name, "method")


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def check_crop(images: ImageSet, crop: int, what: str = "an image") -> None:
    """Raise ValueError if an image (``what``) is smaller than the crop size."""
    if images.min_side() < crop:
        raise ValueError(f"{what} is smaller ({images.min_side()} px) than the crop size {crop}")


# -- self-supervised denoising on crops of the noisy collection (n2v, n2s, ne2ne) -------------

class CropConfig(StrictConfig):
    """The fields of a method trained on random crops of the noisy collection (each subclass
    documents them with its own meaning of ``seed``).

    Attributes:
        steps: optimisation steps.
        batch_size: crops per step.
        crop_size: side of the square crops, in pixels.
        lr: Adam learning rate (cosine-decayed to 1 % by the trainer).
        seed: seeds the crops, the method's own draws and the initial weights (0 ≤ seed ≤ MAX_SEED).
    """

    steps: int = Field(800, ge=1, le=MAX_STEPS)
    batch_size: int = Field(16, ge=1)
    crop_size: int = Field(48, ge=8)
    lr: float = Field(1e-3, gt=0, le=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _batch_fits(self):
        check_batch_pixels(self.batch_size, self.crop_size, "batch_size × crop_size²")
        return self


class CropLossMethod(Method):
    """Base of the self-supervised denoisers (n2v, n2s, ne2ne): each step draws ``batch_size``
    random dihedral-augmented crops (B, C, crop, crop) of the noisy collection
    (:func:`rcl.data.datasets.crop_batch`) and returns ``criterion(model, crops, parameter,
    generator)``, whose draws follow the crops' on the same generator. The network it trains is a
    restorer usable with 0 labels.

    A subclass names its loss in the class statement,
    ``class N2V(CropLossMethod, criterion=n2v_loss, parameter="mask_ratio")``: ``parameter`` is
    the config field passed to the criterion; a subclass with a parameter that changes per step
    overrides :meth:`loss_parameter` instead.

    Raises (constructor): ValueError if an image is smaller than the crop.
    """

    Config: ClassVar[type[CropConfig]]
    zero_label = True
    claim_role = "self-supervised"
    criterion: ClassVar[Callable[..., tuple[torch.Tensor, dict]]]
    """``f(model, x (B, C, crop, crop), parameter, generator) -> (scalar loss, logs)``."""
    parameter: ClassVar[str | None] = None

    def __init_subclass__(cls, criterion: Callable | None = None, parameter: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if criterion is not None:
            cls.criterion = staticmethod(criterion)
        if parameter is not None:
            cls.parameter = parameter

    def __init__(self, data, cfg: CropConfig, **kw):
        check_crop(data, cfg.crop_size)
        super().__init__(data, cfg, **kw)

    def batch(self, draws: Draws) -> tuple[torch.Tensor]:
        return (crop_batch(self.source, self.cfg.batch_size, self.cfg.crop_size, draws)[0],)

    def objective(self, model: nn.Module, batch, draws: Draws) -> tuple[torch.Tensor, dict]:
        return self.criterion(model, batch[0], self.loss_parameter(draws), draws)

    def loss_parameter(self, draws: Draws):
        """The criterion's parameter at the step of ``draws``: the config field ``parameter``."""
        return getattr(self.cfg, self.parameter)
