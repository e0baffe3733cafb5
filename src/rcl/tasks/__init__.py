"""Restoration tasks: the registry and the built-in tasks.

=========  ======================  =====================================================
name       class                   input → output
=========  ======================  =====================================================
denoise    :class:`DenoiseTask`    noisy (C, H, W) → clean (C, H, W)
sr         :class:`SRTask`         noisy LR (C, H/s, W/s) → clean HR (C, H, W), s ∈ {2, 3, 4, 8}
jdd        :class:`JDDTask`        noisy Bayer mosaic (1, H, W) → clean RGB (3, H, W)
=========  ======================  =====================================================

A new task subclasses :class:`Task` and registers itself with :func:`register_task`; nothing
outside this package needs to know its name.
"""

from __future__ import annotations

from ..registry import lookup, register
from .base import Task, TaskFieldError, short_repr

TASKS: dict[str, type[Task]] = {}
"""Registered tasks: name → class (insertion order: denoise, sr, jdd, then any added)."""


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator adding a :class:`Task` subclass to :data:`TASKS` under ``cls.name``.

    Raises:
        TypeError: not a Task subclass with a name.
        ValueError: another class is registered under that name.
    """
    return register(TASKS, cls, Task, "task", "register_task")


def get_task(name: str, **params) -> Task:
    """An instance of the task ``name`` (e.g. ``get_task("sr", scale=4)``).

    Raises:
        ValueError: unknown name (the message lists the known tasks), or bad ``params``.
    """
    return lookup(TASKS, name, "task")(**params)


def task_from_metadata(meta: dict) -> Task:
    """The task a checkpoint was trained for, from its metadata (``task``, default "denoise", and
    the task's own fields such as ``scale``, ``pattern``, ``skip``), every field validated.

    Raises:
        TaskFieldError: a field out of bounds; ``field`` names it (``"task"`` for an unknown task).
    """
    name = meta.get("task", "denoise")
    if not isinstance(name, str) or name not in TASKS:
        raise TaskFieldError("task", f"must be one of {', '.join(TASKS)} (got {short_repr(name)})")
    return TASKS[name].from_metadata(meta)


from .denoise import DenoiseTask  # noqa: E402
from .jdd import JDDTask  # noqa: E402
from .sr import SRTask  # noqa: E402

register_task(DenoiseTask)
register_task(SRTask)
register_task(JDDTask)

__all__ = ["DenoiseTask", "JDDTask", "SRTask", "TASKS", "Task", "TaskFieldError", "get_task", "register_task",
           "task_from_metadata"]


def pretraining_task(meta: dict) -> Task | None:
    """The task a checkpoint was pre-trained for when its network is not a restorer of the images
    (its metadata records the task's :meth:`Task.pretraining_metadata`, e.g. JDD's packed
    mosaics), else None (a restorer: :func:`task_from_metadata` says which)."""
    for cls in TASKS.values():
        task = cls.pretrained_for(meta)
        if task is not None:
            return task
    return None


__all__ += ["pretraining_task"]
