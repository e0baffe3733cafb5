"""Validated training configurations (pydantic, strict: see :mod:`rcl.configs`). Errors name the
field and the allowed range.

Each method owns its config (:mod:`rcl.methods`); the two every user meets are re-exported here:
:class:`FinetuneConfig` (method ``supervised``) and :class:`PretrainConfig` (= ``RCLConfig``,
method ``rcl``).
"""

from ..methods.rcl import PretrainConfig
from ..methods.supervised import FinetuneConfig

__all__ = ["FinetuneConfig", "PretrainConfig"]
