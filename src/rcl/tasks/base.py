"""The :class:`Task` base: one definition of what a restoration task is.

A task says how a clean image becomes the network's input (:meth:`Task.degrade`, used both to make
fixed training realisations and by the evaluation protocol), what a training batch is
(:meth:`Task.training_batch`), which network it trains (:meth:`Task.build_model`,
:meth:`Task.init_model`, :meth:`Task.pretrain_model_config`), what it records in a checkpoint
(:meth:`Task.metadata` / :meth:`Task.from_metadata`) and how its outputs are scored
(:meth:`Task.reference`, :meth:`Task.score`).

Conventions: images are float (C, H, W) tensors, clean values in [0, 1], noisy values unclipped;
batches are (B, C, H, W); σ values are on the [0, 1] scale.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..data.datasets import ImageSet, add_noise_per_image
from ..data.noise import NoiseModel
from ..models.factory import ModelConfig, transfer_weights
from ..models.unet import UNet


class TaskFieldError(ValueError):
    """A task record (checkpoint metadata, network body) is invalid; ``field`` names the key
    (``"scale"``, ``"pattern"``, ``"model.arch"``, …) and ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (for one-line error messages)."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "…"


def unit_scale(meta: dict, task: str) -> None:
    """Validate that ``meta["scale"]`` is 1 or absent (tasks whose output has the input's size).

    Raises:
        TaskFieldError: field ``scale``.
    """
    scale = meta.get("scale")
    if scale is not None and not (type(scale) is int and scale == 1):
        raise TaskFieldError("scale", f"must be 1 or absent for task {task} (got {short_repr(scale)})")


def meta_pattern(meta: dict, default: str | None) -> str | None:
    """``meta["pattern"]`` validated and upper-cased; ``default`` when absent (None: not required).

    Raises:
        TaskFieldError: field ``pattern`` (not one of :data:`rcl.data.degradations.PATTERNS`).
    """
    from ..data.degradations import PATTERNS

    pattern = meta.get("pattern")
    if pattern is None:
        return default
    if not isinstance(pattern, str) or pattern.upper() not in PATTERNS:
        raise TaskFieldError("pattern", f"must be one of {', '.join(PATTERNS)} (got {short_repr(pattern)})")
    return pattern.upper()


def unet_body_only(body: ModelConfig, task: str) -> None:
    """Raise :class:`TaskFieldError` (field ``model.arch``) unless ``body`` is a U-Net."""
    if body.arch != "unet":
        raise TaskFieldError("model.arch", f"task {task} needs a U-Net body (got {body.arch!r})")


def check_channels(images: ImageSet, model_channels: int) -> None:
    """Raise ValueError if ``images`` do not have the ``model_channels`` the network takes."""
    if images.channels != model_channels:
        raise ValueError(f"images have {images.channels} channel(s) but the model takes {model_channels}")


def init_with_body(task: "Task", body: ModelConfig, init: nn.Module | None, net_type: type[nn.Module],
                   check: Callable[[nn.Module], None] | None = None) -> nn.Module:
    """:meth:`Task.init_model` of a task whose network (``net_type``: SRNet, JDDNet) wraps a U-Net
    ``body``: a fresh network (``init`` None); a copy of a ``net_type`` ``init`` (after
    ``check(init)``); or a fresh network whose body gets the weights of a U-Net ``init``.

    Raises:
        TypeError: another kind of ``init`` (the message names ``net_type``).
    """
    if init is None:
        return task.build_model(body)
    if isinstance(init, net_type):
        if check is not None:
            check(init)
        return copy.deepcopy(init)
    if isinstance(init, UNet):
        model = task.build_model(body)
        transfer_weights(model.body, init)
        return model
    raise TypeError(f"init must be a {net_type.__name__}, a U-Net denoiser or None, got {type(init).__name__}")


def check_synthesised_training(task: "Task", clean: ImageSet, cfg, noise: NoiseModel | None, inputs: ImageSet | None,
                               *, crop: tuple[str, str], no_real: str, pairs: tuple[str, str]) -> None:
    """The checks of :meth:`Task.check_training` for a task that synthesises its input from clean
    crops (SR, JDD), in this order: ``cfg.crop_size`` a multiple of ``task.input_multiple``
    ("the <crop[0]> (N) must be <crop[1]>"), a synthetic noise model or None (``no_real``), and
    one fixed input per clean image ("<n> <pairs[0]> for <m> <pairs[1]>").

    Raises:
        ValueError: the first check that fails, with its message.
    """
    if cfg.crop_size % task.input_multiple:
        raise ValueError(f"the {crop[0]} ({cfg.crop_size}) must be {crop[1]}")
    if noise is not None and not noise.synthetic:
        raise ValueError(no_real)
    if inputs is not None and len(inputs) != len(clean):
        raise ValueError(f"{len(inputs)} {pairs[0]} for {len(clean)} {pairs[1]}")


def noisy_copies(images: ImageSet, noise: NoiseModel | None, seed: int) -> tuple[ImageSet, torch.Tensor]:
    """One fixed noise realisation per image (generator seeded by ``seed`` and the image's name,
    :func:`rcl.data.datasets.add_noise_per_image`); ``noise`` None: unchanged, σ = 0."""
    if noise is None:
        return images, torch.zeros(len(images))
    return add_noise_per_image(images, noise, seed)


class Task:
    """A restoration task. Subclasses set the class attributes and implement the abstract methods.

    Attributes:
        name: registry key ("denoise", "sr", "jdd").
        train_noise: CLI default noise spec for pre-training and fine-tuning.
        eval_noise: CLI default noise spec of the evaluation protocol.
        reference_name: the classical reference row of the protocol.
        input_is_noisy_target: the input is a noisy copy of the target (same size and channels), so
            the protocol accepts precomputed noisy inputs (denoising only).
        scale: output size / input size (SR: the scale factor).
        input_multiple: clean images are cropped to a multiple of this (SR: scale, JDD: 2).
    """

    name: ClassVar[str]
    train_noise: ClassVar[str] = "gaussian:5-50"
    eval_noise: ClassVar[str] = "gaussian:25"
    reference_name: ClassVar[str] = "noisy input"
    input_is_noisy_target: ClassVar[bool] = False
    scale: int = 1
    input_multiple: int = 1

    # ------------------------------------------------------------------ identity and checkpoints

    def describe(self) -> str:
        """Human-readable name, e.g. ``"super-resolution ×2"``."""
        raise NotImplementedError

    def metadata(self) -> dict:
        """What a checkpoint records about the task (``{"task": name, "scale": …}`` plus the task's
        own fields); :meth:`from_metadata` inverts it."""
        return {"task": self.name, "scale": self.scale}

    @classmethod
    def from_metadata(cls, meta: dict) -> "Task":
        """The task of a checkpoint's metadata, every field it reads validated.

        Raises:
            TaskFieldError: a field out of bounds (``field`` names it).
        """
        raise NotImplementedError

    def check_body(self, body: ModelConfig) -> None:
        """Raise :class:`TaskFieldError` (``model.*`` field) if ``body`` cannot serve this task."""

    def describe_network(self, body: str) -> str:
        """The network of this task around a body described as ``body`` (checkpoint messages)."""
        return body

    def build_model(self, body: ModelConfig, meta: dict | None = None) -> nn.Module:
        """A fresh network of this task on ``body`` (drawn from torch's global RNG).

        ``meta``: validated checkpoint metadata; when given, the network options it records
        (e.g. ``skip``) are used instead of this task's.
        """
        raise NotImplementedError

    def init_model(self, body: ModelConfig, init: nn.Module | None) -> nn.Module:
        """The network fine-tuning starts from: fresh (``init`` None), a copy of ``init``, or (tasks
        with a body) a fresh network whose body gets ``init``'s weights.

        Raises:
            TypeError: ``init`` is not a network this task can start from.
        """
        raise NotImplementedError

    def pretrain_model_config(self, body: ModelConfig) -> ModelConfig:
        """The network self-supervised pre-training trains for this task (default: ``body``)."""
        return body

    # ------------------------------------------------------------------ data

    def degrade(self, clean: ImageSet, noise: NoiseModel | None, seed: int
                ) -> tuple[ImageSet, ImageSet, torch.Tensor]:
        """Fixed degraded inputs of clean images, one noise realisation per image seeded by ``seed``
        and the image's name.

        Returns:
            ``(inputs, targets, sigmas)``: the network inputs, the (cropped) clean targets and σ (N,)
            on the [0, 1] scale (0 without noise).
        """
        raise NotImplementedError

    def pretraining_data(self, images: ImageSet, noise: NoiseModel | None, seed: int) -> ImageSet:
        """The noisy collection self-supervised methods pre-train on: ``images`` noised once per image
        (seeded by ``seed`` and the name) with a synthetic ``noise``; as they are with real noise
        or ``noise`` None. A file-backed collection (:class:`rcl.data.filebank.FileImageSet`) gets
        the same noise as a transform applied when each image is decoded
        (:meth:`~rcl.data.filebank.FileImageSet.with_noise`)."""
        from ..data.filebank import FileImageSet

        if noise is None or not noise.synthetic:
            return images
        if isinstance(images, FileImageSet):
            return images.with_noise(noise, seed)
        return add_noise_per_image(images, noise, seed)[0]

    def training_batch(self, clean: ImageSet, inputs: ImageSet | None, noise: NoiseModel | None,
                       batch: int, crop: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` for one supervised step: ``batch`` random crops of side ``crop`` (target pixels)
        of ``clean`` degraded on the fly (fresh noise from ``generator``), or, with fixed
        ``inputs`` (one per clean image, as :meth:`degrade` makes them), aligned crops of both."""
        raise NotImplementedError

    def check_training(self, clean: ImageSet, body: ModelConfig, cfg, noise: NoiseModel | None = None,
                       inputs: ImageSet | None = None) -> None:
        """Raise ValueError if supervised training on ``clean`` (and fixed ``inputs``) with ``noise``,
        a network on ``body`` and the config ``cfg`` (``crop_size``) cannot run."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation protocol

    def reference(self, inp: torch.Tensor) -> torch.Tensor:
        """The classical reference output for one input (C, H, W) (the protocol's reference row)."""
        raise NotImplementedError

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        """``{"psnr", "ssim"[, "psnr_rgb"]}`` of an output against its target (both (C, H, W))."""
        raise NotImplementedError

    def check_model_input(self, channels: int, model_channels: int, what: str,
                          size: tuple[int, int] | None = None) -> None:
        """Raise ValueError naming ``what`` if an input of ``channels`` (and (H, W) ``size``) does
        not fit a network of this task taking ``model_channels``."""
        if channels != model_channels:
            raise ValueError(f"{what}: has {channels} channel(s); the model takes {model_channels}")

    # ------------------------------------------------------------------ value semantics

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.metadata() == other.metadata()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.metadata().items())))

    def __repr__(self) -> str:
        fields = {k: v for k, v in self.metadata().items() if k != "task"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    # ------------------------------------------------------------------ benchmark hooks
    # (used by rcl.benchmark; a new task gets working defaults: its reference row only)

    reference_id: ClassVar[str] = "reference"
    """Short name of the reference row (:meth:`reference`) among the network-free restorers of
    :meth:`classical_restorer` (benchmark cell keys and cache folders: "bicubic", "bilinear", …)."""

    def classical_restorer(self, name: str, **options):
        """A network-free restorer ``(input (C, H, W), σ on [0, 1]) -> output`` of the protocol:
        :attr:`reference_id` is :meth:`reference`; tasks add their classical methods (BM3D,
        Malvar-He-Cutler demosaicking, …), configured by ``options`` (e.g. ``profile``).

        Raises:
            ValueError: a name the task does not know.
        """
        if name == self.reference_id:
            return lambda inp, sigma: self.reference(inp)
        raise ValueError(f"task {self.name}: unknown network-free method {name!r}")

    def min_test_size(self) -> tuple[int, str | None]:
        """The smallest side a clean test image may have, and why (the end of the error message of
        :func:`rcl.data.datasets.load_image_set`): 11 px, SSIM's 11×11 Gaussian window (Wang et
        al., 2004). The one rule of ``rcl evaluate`` and the benchmark."""
        return 11, "11 px (SSIM's 11×11 window); drop the file"

    # ------------------------------------------------------------------ command-line hooks
    # (used by rcl.cli, which never branches on a task name; messages name the CLI options)

    summary: ClassVar[str] = ""
    """What the task maps, in a few words (help of ``rcl finetune --task`` and ``rcl restore``)."""

    protocol_help: ClassVar[str] = ""
    """How ``rcl evaluate`` scores the task, in one sentence without a final period."""

    score_note: ClassVar[str] = ""
    """Appended to the task in the title of the evaluation table (e.g. " (Y channel)")."""

    pretraining_help: ClassVar[str] = "the noisy images"
    """What self-supervised pre-training for this task trains on (help of ``rcl pretrain --task``)."""

    pretraining_name: ClassVar[str] = "noisy images"
    """Short name of the pre-training data in messages ("packed Bayer mosaics")."""

    cli_options: ClassVar[dict[str, str]] = {}
    """Command-line options that parametrise the task: constructor parameter → help (e.g. SR
    ``{"scale": "SR scale factor (2, 3, 4 or 8)"}``); the constructor's default is the option's."""

    is_body: ClassVar[bool] = False
    """The task's network is a bare body (a denoiser), whose weights can start the body of any task
    that accepts them (:attr:`starts_from_denoiser`)."""

    starts_from_denoiser: ClassVar[bool] = True
    """Fine-tuning may start from a denoiser checkpoint (False: only from this task's own
    pre-training or checkpoints, e.g. JDD's packed mosaics)."""

    @classmethod
    def from_options(cls, **options) -> "Task":
        """The task built from command-line options: those named in :attr:`cli_options`; an absent
        one (None) takes the constructor's default.

        Raises:
            ValueError: a bad option value, naming the option; or an option given (not None) that
                this task does not take ("--pattern applies to --task jdd only").
        """
        from . import TASKS

        for k, v in options.items():
            if v is not None and k not in cls.cli_options:
                users = [name for name, other in TASKS.items() if k in other.cli_options]
                takes = f"applies to {', '.join(f'--task {u}' for u in users)} only" if users else "is not a task option"
                raise ValueError(f"--{k.replace('_', '-')} {takes} (got --task {cls.name})")
        return cls(**{k: v for k, v in options.items() if k in cls.cli_options and v is not None})

    def check_crop_size(self, crop: int) -> None:
        """Raise ValueError if ``--crop-size`` ``crop`` (of the clean target) does not suit the task:
        it must be a multiple of :attr:`input_multiple`."""
        if crop % self.input_multiple:
            raise ValueError(f"--crop-size {crop} must be a multiple of {self.input_multiple} for {self.describe()}")

    def check_tile(self, tile: int) -> None:
        """Raise ValueError if tiles of ``tile`` input pixels cannot restore with this task's network."""

    def body_channels(self, image_channels: int) -> int:
        """Channels of the network body fine-tuned on clean images of ``image_channels``.

        Raises:
            ValueError: images this task cannot train on (the message names the task option).
        """
        return image_channels

    def output_channels(self, in_channels: int) -> int:
        """Channels of the output (and of the clean target) of a network taking ``in_channels``."""
        return in_channels

    def check_pretraining(self, images: ImageSet, noise: NoiseModel, crop: int, what: str) -> None:
        """Raise ValueError (naming the option, or ``what``, the images' source) if self-supervised
        pre-training for this task cannot use ``images`` with ``noise`` and crops of side ``crop``
        (checked before :meth:`pretraining_data` does any work)."""

    def pretraining_metadata(self) -> dict:
        """What a checkpoint pre-trained for this task records when its network is not a restorer
        of the images (JDD: the packed-mosaic UNet(4, 4)); {} when it is a denoiser of the images.
        :meth:`pretrained_for` inverts it."""
        return {}

    @classmethod
    def pretrained_for(cls, meta: dict) -> "Task | None":
        """The task of this class a checkpoint was pre-trained for (its metadata records
        :meth:`pretraining_metadata`), else None."""
        return None

    def checkpoint_metadata(self, model: nn.Module) -> dict:
        """What a checkpoint of ``model``, a network trained for this task, records about the task
        (:func:`rcl.tasks.task_from_metadata` reads it back; the network's own options, such as its
        skip, come from ``model``)."""
        return self.metadata()

    def check_init(self, meta: dict) -> None:
        """Raise ValueError if the checkpoint with (validated) metadata ``meta`` cannot start a
        fine-tune of this task: accepted are this task's own pre-training or checkpoints (see
        :meth:`check_init_task`) and, when :attr:`starts_from_denoiser`, denoisers."""
        from . import pretraining_task, task_from_metadata

        pre = pretraining_task(meta)
        if pre is not None:
            if type(pre) is not type(self):
                raise ValueError(f"pre-trained on {pre.pretraining_name}; fine-tune it with --task {pre.name}")
            self.check_init_task(pre, pretrained=True)
            return
        init = task_from_metadata(meta)
        if type(init) is type(self):
            self.check_init_task(init)
        elif not init.is_body:
            raise ValueError(f"a {init.name} checkpoint cannot initialise a --task {self.name} fine-tune")
        elif not self.starts_from_denoiser:
            raise ValueError(f"--task {self.name} starts from a checkpoint pre-trained with "
                             f"`rcl pretrain --task {self.name}` ({self.pretraining_name})")

    def check_init_task(self, other: "Task", pretrained: bool = False) -> None:
        """Raise ValueError if a checkpoint of (``pretrained``: pre-trained for) ``other``, a task of
        this class, cannot start a fine-tune of this task (e.g. another SR scale)."""
