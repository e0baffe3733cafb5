"""Config validation helpers of the benchmark: one-line error messages naming the full field path
(``pretrain.rcl.lr: ...``), the field checks shared by the config sections and the annotated field
types that apply them (defined once, used by every section with such a field), and the
pre-training methods as the benchmark sees them (the :mod:`rcl.methods` registry and its traits:
nothing here or above compares a method name)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable

from pydantic import AfterValidator, ValidationError

from ..configs import PathField, Seed

METHODS = ("rcl", "simclr", "n2v", "n2s", "ne2ne", "none")
"""The default ``methods`` of a benchmark config (data: any registered pre-training method may be listed)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*$")

# pydantic error types where the offending input is worth quoting ("got '800'"): YAML type tricks
_TYPE_ERRORS = ("int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type", "model_type",
                "int_from_float", "int_parsing", "float_parsing", "literal_error")


class BenchmarkConfigError(ValueError):
    """A benchmark config that cannot be read or validated; the message names the field/file."""


class NestedConfigError(ValueError):
    """Errors of a config built inside a validator (:func:`build`), kept as (field path, message)
    pairs so that the enclosing error can name the full path (``pretrain.rcl.lr``)."""

    def __init__(self, parts: list[tuple[str, str]]):
        self.parts = parts
        super().__init__(_join_errors(parts))


def _join_errors(parts: list[tuple[str, str]]) -> str:
    return "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in parts)


def _error_parts(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        loc = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        nested = (err.get("ctx") or {}).get("error")
        if isinstance(nested, NestedConfigError):
            parts += [(f"{loc}.{sub}" if loc and sub else (loc or sub), msg) for sub, msg in nested.parts]
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") in ("extra_forbidden",):
            msg = "unknown field (not allowed here)"
        elif err.get("type") in _TYPE_ERRORS:
            got = err.get("input")
            if isinstance(got, (bool, int, float, str)) and len(repr(got)) <= 40:
                msg = f"{msg} (got {got!r})"
            elif isinstance(got, (list, dict)):
                msg = f"{msg} (got a {'list' if isinstance(got, list) else 'mapping'})"
        parts.append((loc, msg))
    return parts


def format_errors(exc: ValidationError, prefix: str = "") -> str:
    """``field.path: message; ...`` for every error (the input quoted for type errors)."""
    return _join_errors(_error_parts(exc, prefix))


def build(cls, data: dict, where: str):
    """``cls(**data)``; a validation error becomes a :class:`NestedConfigError` under ``where``."""
    try:
        return cls(**data)
    except ValidationError as exc:
        raise NestedConfigError(_error_parts(exc, where)) from None
    except TypeError as exc:
        raise NestedConfigError([(where, str(exc))]) from None


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``, mappings recursively."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- field checks ---------------------------------------------------------------------------

def check_name(v: str, what: str) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(f"{what} {v!r} may contain only letters, digits and _ . + = - (it names files)")
    return v


def check_noise(spec: str, what: str = "noise") -> str:
    from ..data.noise import parse_noise_spec

    model = parse_noise_spec(spec)  # ValueError names the spec and the accepted forms
    if not model.synthetic:
        raise ValueError(f"{what} {spec!r}: 'real' noise has no clean reference; the benchmark needs "
                         "synthetic noise (e.g. gaussian:25 or gaussian:5-50)")
    return spec.strip().lower()


def check_methods(v: list[str]) -> list[str]:
    known = pretraining_methods()
    if not v:
        raise ValueError(f"list at least one method; choose from {', '.join(known)}")
    for m in v:
        if m not in known:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(known)}")
    if len(set(v)) != len(v):
        raise ValueError(f"methods repeat: {v}")
    return v


def check_fractions(v: list[float]) -> list[float]:
    if not v:
        raise ValueError("list at least one label fraction, e.g. [0.01, 0.05, 0.1, 1.0]")
    for f in v:
        if not (isinstance(f, (int, float)) and 0 < f <= 1):
            raise ValueError(f"label fraction {f:g} is not in (0, 1]: a fraction is the share of training "
                             "images that have clean labels (at least one image is always used)")
    if len(set(v)) != len(v):
        raise ValueError(f"label fractions repeat: {v}")
    return sorted(float(f) for f in v)


def check_seeds(v: list[int]) -> list[int]:
    if not v:
        raise ValueError("list at least one seed")
    if len(set(v)) != len(v):
        raise ValueError(f"seeds repeat: {v}")
    return v


def check_exists(p: Path, what: str) -> Path:
    if not Path(p).exists():
        hint = "" if Path(p).is_absolute() else " (relative to the current folder; pass a data root)"
        raise ValueError(f"{what}: no such file or folder: {p}{hint}")
    return Path(p)


def check_unique_tests(tests: list) -> None:
    names = [t.name.lower() for t in tests]
    if len(set(names)) != len(names):
        raise ValueError(f"test set names repeat: {[t.name for t in tests]}")


def no_cell_fields(given: Iterable[str], where: str) -> None:
    """Refuse the fine-tuning fields set per cell (label_fraction, seed) among the field names
    ``given``; the message points to the list in ``where`` (``"the top-level "``,
    ``"this task section's "``)."""
    for f, other in (("label_fraction", "label_fractions"), ("seed", "seeds")):
        if f in given:
            raise ValueError(f"{f} is set per cell; list the values in {where}{other!r} instead")


def check_noise_list(v: list[str]) -> list[str]:
    """Every spec of ``v`` checked (:func:`check_noise`) and normalised."""
    return [check_noise(s) for s in v]


def check_unique_noises(v: list[str]) -> list[str]:
    """:func:`check_noise_list`, refusing a spec given twice (after normalisation)."""
    out = check_noise_list(v)
    if len(set(out)) != len(out):
        raise ValueError(f"noise specs repeat: {v}")
    return out


def _task_finetune(d: dict) -> dict:
    no_cell_fields(d, "this task section's ")
    return d


# -- field types: a check applied after the type's own validation, with the field's path -----

def checked(check: Callable[..., Any], *args: Any) -> AfterValidator:
    """The validator ``check(value, *args)`` (its ValueError is the field's error), for
    ``Annotated[type, checked(check_name, "test set name")]``."""
    return AfterValidator(lambda v: check(v, *args))


MethodList = Annotated[list[str], AfterValidator(check_methods)]
"""Registered pre-training methods, at least one, none twice."""
FractionList = Annotated[list[float], AfterValidator(check_fractions)]
"""Label fractions in (0, 1], at least one, none twice; sorted."""
SeedList = Annotated[list[Seed], AfterValidator(check_seeds)]
"""Seeds, at least one, none twice."""
NoiseList = Annotated[list[str], AfterValidator(check_noise_list)]
"""Synthetic noise specs, normalised."""
TaskFinetune = Annotated[dict[str, Any], AfterValidator(_task_finetune)]
"""A task section's fine-tuning fields, without the per-cell label_fraction and seed."""
NoiseSpec = Annotated[str, checked(check_noise, "noise")]
"""A synthetic noise spec, normalised (named "noise" in messages)."""
TrainPath = Annotated[PathField, checked(check_exists, "training images")]
"""An existing folder (or file) of clean training images."""


# -- the pre-training methods (rcl.methods registry and traits) ------------------------------

def pretraining_methods() -> list[str]:
    """Names of the registered methods a benchmark can pre-train with (not ``supervised``), in
    registration order: rcl, simclr, n2v, n2s, ne2ne, none, then any registered later."""
    from ..methods import METHODS as REGISTRY

    return [name for name, cls in REGISTRY.items() if not cls.supervised]


def role_methods(role: str, among: list[str] | None = None) -> list[str]:
    """The pre-training methods whose :attr:`rcl.methods.Method.claim_role` is ``role`` ("ours",
    "scratch", "self-supervised", "contrastive"), in registration order; only those ``among``
    a list of names when given."""
    from ..methods import get_method

    return [m for m in pretraining_methods() if get_method(m).claim_role == role and (among is None or m in among)]


def role_method(role: str) -> str:
    """The first registered method of claim role ``role`` (e.g. "ours": ``rcl``, "scratch": ``none``).

    Raises:
        ValueError: no registered method has that role.
    """
    names = role_methods(role)
    if not names:
        raise ValueError(f"no registered method has the claim role {role!r}")
    return names[0]


def method_label(name: str) -> str:
    """A method's name in the report's tables: the "scratch" method is marked (``none (scratch)``)."""
    from ..methods import get_method

    return f"{name} (scratch)" if get_method(name).claim_role == "scratch" else name
