"""Pre-trained networks shipped inside the package, by name: ``pretrained:gray``, ``pretrained:colour``.

The paper's point (Dong et al., "Residual Contrastive Learning for Image Reconstruction",
IJCAI 2022, arXiv 2106.10070) is that RCL pre-training transfers: a user with a few labelled
pairs of their own can fine-tune a network pre-trained elsewhere instead of pre-training one,

    rcl finetune DATA --init pretrained:gray --labels 4 -o mine.safetensors

Each file is an ordinary rcl checkpoint (safetensors + JSON metadata; nothing is unpickled)
whose metadata records how it was made (``shipped.command``, ``shipped.source``). What each was
trained on, for how long, and what it scores are in ``docs/pretrained.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PREFIX = "pretrained:"
SHIPPED = {
    "gray": "RCL pre-training, grayscale U-Net w16 d3, Train400 noised once with σ∈[5, 50]",
    "colour": "RCL pre-training, RGB U-Net w16 d3, LIVE1 noised once with σ∈[5, 50]",
}


def is_pretrained(spec: str | Path) -> bool:
    """Whether ``spec`` names a shipped network (``pretrained:NAME``)."""
    return str(spec).startswith(PREFIX)


def _file(name: str) -> Path:
    return Path(str(resources.files("rcl.pretrained").joinpath(f"{name}.safetensors")))


def describe(path: str | Path) -> str:
    """``pretrained:NAME`` for the file of a shipped network (portable, e.g. in checkpoint metadata),
    else the path as given."""
    p = Path(path)
    for name in SHIPPED:
        shipped = _file(name)
        if p.exists() and shipped.exists() and p.resolve() == shipped.resolve():
            return PREFIX + name
    return str(path)


def pretrained_path(spec: str) -> Path:
    """The file of a shipped network, ``pretrained:NAME`` (NAME: ``gray``, ``colour``).

    Raises:
        ValueError: an unknown name (the shipped ones are listed), or a name whose file is not in
            this installation (the message says so).
    """
    name = str(spec)[len(PREFIX):] if is_pretrained(spec) else str(spec)
    if name not in SHIPPED:
        raise ValueError(f"{PREFIX}{name}: no such shipped network; shipped: "
                         f"{', '.join(PREFIX + n for n in SHIPPED)}")
    path = _file(name)
    if not path.is_file():
        raise ValueError(f"{PREFIX}{name}: not included in this installation of rcl ({path} is missing)")
    return path
