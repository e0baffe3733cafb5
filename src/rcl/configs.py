"""What every rcl configuration shares: the strict pydantic base, the seed bound and the YAML loader.

Strictness (:class:`StrictConfig`, pydantic's ``strict=True`` plus ``extra="forbid"`` and
``allow_inf_nan=False``):

* an ``int`` field takes only an integer: not a bool (``steps: true``), not a string
  (``steps: "800"``) and not a float, even an integral one (``steps: 1.0`` and ``steps: 1e3``
  are refused: a float in an integer field is almost always a typo or a unit mix-up, and
  accepting ``1.0`` but not ``1.5`` would make the rule depend on the value);
* a ``float`` field takes an int or a float (``lr: 1`` is 1.0), never a bool or a string
  (``lr: "1e-3"``); inf and nan are refused;
* a ``bool`` field takes only true/false; a ``str`` field only a string; a list only a list
  (``methods: rcl`` is refused);
* path fields (:data:`PathField`) still take strings;
* integer choices (:data:`Channels`) take only the integers listed (not ``true`` nor ``3.0``);
* unknown fields are refused.

Seeds (:data:`Seed`) are integers in ``[0, MAX_SEED]``, the range every RNG of rcl accepts
(``torch.Generator.manual_seed`` takes up to 2**64 − 1; the CLI and the configs use 2**63 − 1).

:func:`load_yaml` reads a config file: it refuses duplicate mapping keys at any depth
(``config.yaml: duplicate key 'steps' at line 12 in pretrain (first at line 10)``) and reads
YAML-1.2 floats without a dot (``1e-3``, ``1e23``, ``-2.5E+4``) as numbers, where PyYAML's YAML 1.1
resolver would return the strings ``"1e-3"``/``"1e23"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

MAX_SEED = 2**63 - 1
"""The largest seed a config accepts (seeds are integers 0 ≤ seed ≤ MAX_SEED)."""


class StrictConfig(BaseModel):
    """Base of every rcl config model (see the module docstring for what strict means here)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A seed: an integer 0 ≤ seed ≤ :data:`MAX_SEED`."""

MAX_STEPS = 10**8
"""The most optimisation steps a config accepts (10⁸: years on a CPU, days on a GPU)."""

MAX_BATCH_PIXELS = 2**23
"""The most pixels one training batch may hold (crops × crop_size², 8.4 M). A fine-tuning batch
of 4,000 crops of 16² (1.0 M pixels) peaked at 1.46 GB on the CPU with the default U-Net, so this
bound is roughly 9–12 GB; a batch of 100,000 crops of 16² (25.6 M pixels) was killed by the
kernel for lack of memory, without a message."""


def check_batch_pixels(crops: int, crop_size: int, what: str) -> None:
    """Raise ValueError if ``crops`` crops of ``crop_size``² exceed :data:`MAX_BATCH_PIXELS`;
    ``what`` names the options (e.g. "batch_size × crop_size²")."""
    n = crops * crop_size * crop_size
    if n > MAX_BATCH_PIXELS:
        raise ValueError(f"{what} = {crops} crops of {crop_size}² = {n:,} pixels per batch; at most "
                         f"{MAX_BATCH_PIXELS:,} (roughly 9–12 GB for the default U-Net): use a smaller batch or crop")

PathField = Annotated[Path, Strict(False)]
"""A path that may be given as a string (strict mode alone would take only ``Path`` objects)."""


def _int_only(v: Any) -> Any:
    # Literal[1, 3] compares by equality, so True and 3.0 would pass it even in strict mode
    if isinstance(v, bool) or not isinstance(v, int):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return v


Channels = Annotated[Literal[1, 3], BeforeValidator(_int_only)]
"""Image channels: exactly the integer 1 (grayscale) or 3 (RGB)."""


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------

class ConfigFileError(ValueError):
    """A config file that is not valid YAML or repeats a key; the message starts with the source."""


# floats with an exponent that YAML 1.1 (PyYAML) reads as strings: no dot (1e-3, 1e23) or an
# unsigned exponent (1.5e3); YAML 1.2's core schema reads them as floats
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def _loader():
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        """SafeLoader that also reads YAML-1.2 exponent floats (``1e-3``) as floats."""

    ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
    return ConfigLoader


_NO_KEY = object()


def _check_duplicates(loader, node, path: str = "", seen: set | None = None) -> None:
    """Raise on a key given twice in one mapping, anywhere below ``node`` (merge keys ``<<`` may
    be overridden, as YAML intends)."""
    import yaml

    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked (and guards recursive documents)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_duplicates(loader, value_node, path, seen)
                continue
            key: Any = _NO_KEY
            if isinstance(key_node, yaml.ScalarNode):
                try:
                    key = loader.construct_object(key_node, deep=True)
                    hash(key)
                except (yaml.YAMLError, TypeError):
                    key = _NO_KEY
            where = f"{path}.{key}" if path else str(key)
            if key is not _NO_KEY:
                line = key_node.start_mark.line + 1
                if key in first:
                    inside = f" in {path}" if path else ""
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} at line {line}{inside} (first at line {first[key]})")
                first[key] = line
            _check_duplicates(loader, value_node, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(loader, item, f"{path}.{i}" if path else str(i), seen)


def _one_line(exc) -> str:
    """A PyYAML error on one line: ``line 2, column 1: <problem> (<context> at line 1, column 7)``."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        m = exc.problem_mark
        msg = (f"line {m.line + 1}, column {m.column + 1}: " if m is not None else "") + exc.problem
        if exc.context:
            c = exc.context_mark
            msg += f" ({exc.context}" + (f" at line {c.line + 1}, column {c.column + 1})" if c is not None else ")")
        return msg
    return " ".join(str(exc).split())


def load_yaml(text: str, source: str = "config") -> Any:
    """Parse one YAML document of a config (None if empty).

    Raises:
        ConfigFileError: ``"<source>: duplicate key 'k' at line N in a.0.b (first at line M)"`` for
            a key repeated in one mapping (at any depth, also inside list items), or
            ``"<source>: not valid YAML: line N, column C: <problem> (<context>)"`` (one line).
    """
    import yaml

    try:
        loader = _loader()(text)  # the reader refuses control characters already here
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _check_duplicates(loader, node)
        except yaml.constructor.ConstructorError as exc:
            if str(exc.problem).startswith("duplicate key "):
                raise ConfigFileError(f"{source}: {exc.problem}") from None
            raise
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigFileError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()
