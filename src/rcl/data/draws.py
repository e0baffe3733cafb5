"""The random numbers of one training step, derived from (seed, step) alone.

Every random choice of a training step (which images, where to crop, which flip, the synthetic
noise, the blind-spot mask, SimCLR's jitter) is drawn through a :class:`Draws`. Each call takes a
fresh generator seeded by (seed, step, stream, call number), on the training device, and draws the
numbers of the **whole global batch**; a rank keeps only its own samples ``[lo, hi)``
(:func:`rcl.distributed.split`). Consequences, each tested:

* N ranks see exactly the batch one rank would (the global batch does not depend on the number of
  ranks), so a run on N ranks gives the same optimisation as one rank with the same global batch;
* a step's batch does not depend on earlier steps: resuming at step t needs no data-generator
  state, only (seed, t);
* nothing is drawn per crop in a Python loop (except Poisson noise, whose rates are per sample).

Drawing the whole global batch on every rank costs N× the random numbers of a rank's own slice;
they are cheap next to the network (our choice, for exactness).

A plain ``torch.Generator`` (or None: torch's global RNG) is accepted wherever a :class:`Draws` is
(:func:`as_draws`): every call then draws directly from it, for the whole batch (one process).
"""

from __future__ import annotations

import hashlib

import torch

from ..distributed import rank as _rank
from ..distributed import split
from ..distributed import world_size as _world_size

_MASK63 = (1 << 63) - 1

SAMPLER = "step-draws/1"
"""The version of the training sampler (part of the benchmark's training-cell hashes: cells
trained with another sampler are recomputed)."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any parts (BLAKE2b of their text): nearby inputs give unrelated seeds."""
    h = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & _MASK63


class Draws:
    """The draws of one step (see the module docstring).

    Args:
        seed: the run's seed.
        step: the step (1-based in training).
        stream: names an independent stream ("batch": data sampling; "loss": the method's draws).
        device: where the numbers are drawn (a device generator).
        rank, world: this rank and the number of ranks (default: from torch.distributed).
        layout: ``(k, n)``: the local batch a method works on is k groups (e.g. RCL's two views)
            of this rank's share of n global samples; the per-row draws (:meth:`sample_rand`, …,
            used by noise models and losses) are drawn for (k, n) and sliced. None: the local
            batch is the whole batch (one rank).
    """

    def __init__(self, seed: int, step: int, stream: str = "batch", device: torch.device | str = "cpu",
                 rank: int | None = None, world: int | None = None, layout: tuple[int, int] | None = None):
        self.seed, self.step, self.stream, self.layout = seed, step, stream, layout
        self.device = torch.device(device)
        self.rank = _rank() if rank is None else rank
        self.world = _world_size() if world is None else world
        self._calls = 0
        self._fixed: torch.Generator | None = None
        self._plain = False

    @classmethod
    def from_generator(cls, generator: torch.Generator | None) -> "Draws":
        """Draws taken directly from ``generator`` (None: torch's global RNG), one rank, no step."""
        d = cls(0, 0, "plain", generator.device if generator is not None else "cpu", 0, 1)
        d._fixed, d._plain, d.step = generator, True, None
        return d

    # ---------------------------------------------------------------- generators and slices

    def generator(self) -> torch.Generator | None:
        """The generator of the next draw."""
        if self._plain:
            return self._fixed
        self._calls += 1
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.seed, self.step, self.stream, self._calls))
        return g

    def local(self, n: int) -> slice:
        """This rank's samples of a global batch of ``n``."""
        lo, hi = split(n, self.world, self.rank)
        return slice(lo, hi)

    def local_size(self, n: int) -> int:
        s = self.local(n)
        return s.stop - s.start

    # ---------------------------------------------------------------- per-sample draws (sliced)

    def rand(self, n: int, *shape: int) -> torch.Tensor:
        """U[0, 1) of shape (n, *shape) for the global batch of n; this rank's rows."""
        return torch.rand((n, *shape), generator=self.generator(), device=self.device)[self.local(n)]

    def randn(self, n: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, 1) of shape (n, *shape) for the global batch; this rank's rows."""
        return torch.randn((n, *shape), generator=self.generator(), device=self.device, dtype=dtype)[self.local(n)]

    def randint(self, high: int, n: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high) of shape (n, *shape) for the global batch; this rank's rows."""
        return torch.randint(0, high, (n, *shape), generator=self.generator(), device=self.device)[self.local(n)]

    def below(self, bounds: torch.Tensor, n: int) -> torch.Tensor:
        """One integer in [0, bounds[i]) per sample; ``bounds`` (local samples,) ≥ 1, any device."""
        u = self.rand(n).to(torch.float64) if self.device.type != "mps" else self.rand(n)
        b = bounds.to(u.device)
        return torch.minimum((u * b).floor().long(), b.long() - 1)

    # ---------------------------------------------------------------- per-row draws of a local batch

    def _rows(self, fn, local_rows: int, shape: tuple[int, ...], **kw) -> torch.Tensor:
        if self._plain or self.layout is None:
            if self.world > 1:
                raise RuntimeError("per-row draws on several ranks need the batch layout (Draws(layout=...))")
            return fn((local_rows, *shape), generator=self.generator(), device=self.device, **kw)
        k, n = self.layout
        b = self.local_size(n)
        if k * b != local_rows:
            raise ValueError(f"a local batch of {local_rows} rows does not match the layout {k}×{n} "
                             f"({b} samples on this rank)")
        full = fn((k, n, *shape), generator=self.generator(), device=self.device, **kw)
        return full[:, self.local(n)].reshape(k * b, *shape)

    def sample_rand(self, local_rows: int, *shape: int) -> torch.Tensor:
        """U[0, 1) of shape (local_rows, *shape), one row per sample of the local batch."""
        return self._rows(torch.rand, local_rows, shape)

    def sample_randn(self, local_rows: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, 1) of shape (local_rows, *shape), one row per sample of the local batch."""
        return self._rows(torch.randn, local_rows, shape, dtype=dtype)

    def sample_randint(self, high: int, local_rows: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high) of shape (local_rows, *shape), one row per sample of the local batch."""
        return self._rows(lambda size, **kw: torch.randint(0, high, size, **kw), local_rows, shape)

    def sample_poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson draws of ``rate`` (local rows, ...): one generator per sample, seeded by its
        global position (the rates differ per sample, so the batch cannot be drawn in one call)."""
        if self._plain:
            return torch.poisson(rate, generator=self._fixed)
        self._calls += 1
        rows = rate.shape[0]
        if self.layout is None:
            if self.world > 1:  # local rows are not global positions: every rank would draw rank 0's noise
                raise RuntimeError("per-row draws on several ranks need the batch layout (Draws(layout=...))")
            globals_ = list(range(rows))
        else:
            k, n = self.layout
            lo = self.local(n).start
            b = self.local_size(n)
            globals_ = [g * n + lo + j for g in range(k) for j in range(b)]
        out = torch.empty_like(rate)
        for r, gi in enumerate(globals_):
            g = torch.Generator(device=rate.device)
            g.manual_seed(derive_seed(self.seed, self.step, self.stream, self._calls, gi))
            out[r] = torch.poisson(rate[r], generator=g)
        return out

    # ---------------------------------------------------------------- draws shared by every rank

    def shared_randperm(self, n: int) -> torch.Tensor:
        """A permutation of range(n), the same on every rank."""
        return torch.randperm(n, generator=self.generator(), device=self.device)

    def shared_randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high), the same on every rank."""
        return torch.randint(0, high, shape, generator=self.generator(), device=self.device)

    def host_randint(self, high: int, n: int) -> list[int]:
        """``n`` integers in [0, high) drawn on the CPU (Python ints, the same on every rank), for
        choices that steer the computation (e.g. Noise2Self's phase) without a device sync."""
        if self._plain:
            g = self._fixed if self._fixed is not None and self._fixed.device.type == "cpu" else None
            return [int(v) for v in torch.randint(0, high, (n,), generator=g)]
        self._calls += 1
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.step, self.stream, self._calls))
        return [int(v) for v in torch.randint(0, high, (n,), generator=g)]


def as_draws(draws: "Draws | torch.Generator | None") -> Draws:
    """``draws`` itself, or a plain generator (None: torch's global RNG) wrapped as a one-rank
    :class:`Draws`."""
    if isinstance(draws, Draws):
        return draws
    if draws is None or isinstance(draws, torch.Generator):
        return Draws.from_generator(draws)
    raise TypeError(f"expected a Draws or a torch.Generator, got {type(draws).__name__}")
