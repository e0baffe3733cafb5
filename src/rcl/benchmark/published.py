"""The published reference numbers (``published.yaml`` beside this module: data, each with its
source) and the rows of this benchmark they are printed beside."""

from __future__ import annotations

import functools
from importlib import resources
from pydantic import Field, ValidationError, field_validator

from ..configs import StrictConfig, load_yaml
from .validation import format_errors


class PublishedRow(StrictConfig):
    """One published PSNR (dB) of ``method`` on ``test`` at ``noise``, from ``source``; ``ours``
    names our row beside it: ``[bm3d]``, ``[direct, METHOD]`` or ``[ft, METHOD, FRACTION]``."""

    test: str
    noise: str
    method: str
    psnr: float
    source: str
    ours: list[str | float]

    @field_validator("ours")
    @classmethod
    def _ours(cls, v):
        shapes = {"bm3d": (), "direct": (str,), "ft": (str, float)}
        kind = v[0] if v else None
        if kind not in shapes or [type(x) for x in v[1:]] != list(shapes[kind]):
            raise ValueError(f"{v}: expected [bm3d], [direct, METHOD] or [ft, METHOD, FRACTION]")
        return v


class BM3DCheck(StrictConfig):
    """The BM3D protocol check: our BM3D on the full ``test`` set (``n_images``) at ``noise`` is
    within ``tolerance`` dB of the published ``psnr``."""

    test: str
    noise: str
    psnr: float
    tolerance: float = Field(ge=0)
    n_images: int = Field(ge=1)
    source: str

    @field_validator("noise")
    @classmethod
    def _noise(cls, v):
        return v.strip().lower()


class Published(StrictConfig):
    bm3d_check: BM3DCheck
    rows: list[PublishedRow]


@functools.lru_cache(maxsize=1)
def published_numbers() -> Published:
    """The packaged ``published.yaml``, validated (read once)."""
    res = resources.files("rcl.benchmark").joinpath("published.yaml")
    raw = load_yaml(res.read_text(encoding="utf-8"), "rcl/benchmark/published.yaml")
    try:
        return Published.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"rcl/benchmark/published.yaml: {format_errors(exc)}") from None
