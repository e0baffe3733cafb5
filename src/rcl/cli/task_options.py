"""The options that choose and parametrise a task (``--task``, ``--scale``, ``--pattern``, the default
``--noise``), generated from the task registry :data:`rcl.tasks.TASKS`.

A registered task appears here with its help text, option defaults and checks (the hooks of
:class:`rcl.tasks.Task`); no command branches on a task name.
"""

from __future__ import annotations

import inspect
from enum import Enum
from typing import Annotated, Callable, Optional

import typer

from ..tasks import TASKS, DenoiseTask, Task
from .common import UsageError

TaskName = Enum("TaskName", {name: name for name in TASKS}, type=str)
"""The ``--task`` choices: the registered tasks, in registration order."""

DEFAULT_TASK = TaskName(DenoiseTask.name)


def _grouped(value: Callable[[type[Task]], str]) -> list[tuple[str, list[str]]]:
    """``(value, task names)`` pairs: the registered tasks grouped by ``value(cls)``, in order."""
    groups: dict[str, list[str]] = {}
    for name, cls in TASKS.items():
        groups.setdefault(value(cls), []).append(name)
    return list(groups.items())


def noise_help(lead: str, default: Callable[[type[Task]], str]) -> str:
    """The help of a ``--noise`` option: ``lead``, then each task's default noise."""
    return f"{lead} Default: " + ", ".join(f"{v} ({', '.join(names)})" for v, names in _grouped(default)) + "."


def task_help(describe: Callable[[type[Task]], str]) -> str:
    """The help of a ``--task`` option: every task, with ``describe(cls)`` when not empty."""
    return "; ".join(f"{name} ({describe(cls)})" if describe(cls) else name for name, cls in TASKS.items()) + "."


def pretraining_task_help() -> str:
    """The help of ``rcl pretrain --task``: what each task pre-trains on."""
    groups = _grouped(lambda cls: cls.pretraining_help)
    return "; ".join(f"{'/'.join(names)}: pre-train on {v}" for v, names in groups) + "."


def _users(option: str) -> list[type[Task]]:
    """The registered tasks that take the command-line option ``--<option>``."""
    return [cls for cls in TASKS.values() if option in cls.cli_options]


def option_help(option: str) -> str:
    """The help of the task option ``--<option>``: each task that takes it, with its help and default
    (the option is refused with any other task)."""
    return " ".join(f"{cls.cli_options[option]} for --task {cls.name} (default: "
                    f"{inspect.signature(cls).parameters[option].default})." for cls in _users(option))


def noise_option(lead: str, default: Callable[[type[Task]], str]):
    """A ``--noise`` option (None: the task's default, ``default(cls)``)."""
    return Annotated[Optional[str], typer.Option("--noise", help=noise_help(lead, default))]


TrainNoiseOpt = noise_option("Noise model, σ on 0-255: gaussian:25, gaussian:5-50 (σ per image), poisson:30, "
                             "poisson-gaussian, or real.", lambda cls: cls.train_noise)
EvalNoiseOpt = noise_option("Noise spec, σ on 0-255 (gaussian:25, gaussian:5-50, poisson:30, poisson-gaussian).",
                            lambda cls: cls.eval_noise)
PatternOpt = Annotated[Optional[str], typer.Option(help=option_help("pattern"))]
ScaleOpt = Annotated[Optional[int], typer.Option(help=option_help("scale"))]
"""The task options: None (not given) takes the task's default; given for a task that does not take
it, the option is refused (:meth:`rcl.tasks.Task.from_options`)."""


def make_task(name: TaskName, **options) -> Task:
    """The task ``--task name`` with its command-line options (a bad value: :class:`UsageError`)."""
    try:
        return TASKS[name.value].from_options(**options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def task_check(check: Callable, *args, prefix: str = ""):
    """``check(*args)``, a task hook; its ValueError becomes a :class:`UsageError` (``prefix`` first)."""
    try:
        return check(*args)
    except ValueError as exc:
        raise UsageError(f"{prefix}{exc}") from None
