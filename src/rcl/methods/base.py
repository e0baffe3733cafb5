"""The :class:`Method` base and the method registry.

A method is one way of training a network: its own validated config (:attr:`Method.Config`), a
loss that draws its own batch (:meth:`Method.loss`, the protocol of
:func:`rcl.training.trainer.train`), traits that callers use instead of comparing names, and the
way a network it trained restores an image (:meth:`Method.predictor`). Every method is run by
:func:`rcl.training.fit.fit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

import torch
from torch import nn

from ..configs import StrictConfig
from ..data.datasets import ImageSet
from ..data.noise import NoiseModel

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

    def __init__(self, data: ImageSet, cfg, *, task: "Task", model: nn.Module,
                 noise: NoiseModel | None = None, inputs: ImageSet | None = None):
        self.data, self.cfg, self.task, self.noise, self.inputs = data, cfg, task, noise, inputs

    def loss(self, model: nn.Module, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Draw a batch from ``generator`` and return ``(scalar loss, logs)``; logs has "loss"."""
        raise NotImplementedError

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
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not isinstance(getattr(cls, "name", None), str):
        raise TypeError(f"register_method takes a Method subclass with a name, got {cls!r}")
    if not (isinstance(getattr(cls, "Config", None), type) and issubclass(cls.Config, StrictConfig)):
        raise TypeError(f"method {cls.name!r}: Config must be a StrictConfig subclass")
    other = METHODS.get(cls.name)
    if other is not None and other is not cls:
        raise ValueError(f"method {cls.name!r} is already registered ({other.__module__}.{other.__qualname__})")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the known methods).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; use one of {', '.join(METHODS)}")
    return METHODS[name]


def check_crop(images: ImageSet, crop: int) -> None:
    """Raise ValueError if an image is smaller than the crop size."""
    if images.min_side() < crop:
        raise ValueError(f"an image is smaller ({images.min_side()} px) than the crop size {crop}")
