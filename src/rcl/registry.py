"""The one registry helper behind :mod:`rcl.methods` (``register_method``/``get_method``) and
:mod:`rcl.tasks` (``register_task``/``get_task``): a registry is a plain ``dict`` (name → class,
in registration order) and these functions add to it and look a name up in it, with the messages
both registries share."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


def register(registry: dict[str, type], cls: T, base: type, kind: str, decorator: str,
             check: Callable[[type], None] | None = None) -> T:
    """Add ``cls`` to ``registry`` under ``cls.name`` and return it (re-registering the same class
    is a no-op).

    Args:
        registry: the name → class mapping.
        cls: the class to add.
        base: the class it must subclass.
        kind: what a class of the registry is, in words ("method", "task").
        decorator: the public function's name, for the messages ("register_method").
        check: extra checks of ``cls`` (raising TypeError), run before the name is looked up.

    Raises:
        TypeError: not a ``base`` subclass with a string ``name`` (or ``check`` refuses it).
        ValueError: another class is registered under that name.
    """
    if not (isinstance(cls, type) and issubclass(cls, base)) or not isinstance(getattr(cls, "name", None), str):
        raise TypeError(f"{decorator} takes a {base.__name__} subclass with a name, got {cls!r}")
    if check is not None:
        check(cls)
    other = registry.get(cls.name)
    if other is not None and other is not cls:
        raise ValueError(f"{kind} {cls.name!r} is already registered ({other.__module__}.{other.__qualname__})")
    registry[cls.name] = cls
    return cls


def lookup(registry: dict[str, type], name: str, kind: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered names).
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; use one of {', '.join(registry)}")
    return registry[name]
