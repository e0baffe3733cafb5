"""torch.distributed helpers of the training engine (launched by ``torchrun``; gloo on CPU, NCCL on GPU).

rcl does not wrap the network in ``DistributedDataParallel``: methods call the network several times
per step (Neighbor2Neighbor, the recorruption term) or through ``model.features`` (SimCLR), which
DDP's forward hooks do not see. Instead every rank computes its *contribution* to the global loss
(its share of a mean over the global batch) and :func:`sync_gradients` sums the gradients with one
all-reduce, so every rank holds exactly the gradient of the global loss.

Three ways contrastive libraries have got this wrong, each guarded by ``tests/training/test_ddp.py``:

* a gather whose backward does not reduce across ranks (the gradient of the gathered negatives
  never reaches the rank that made them): :func:`all_gather_with_grad` sums the incoming gradient
  over ranks in its backward;
* an ``all_reduce`` of the loss without autograd, which leaves gradients 1/world_size too small:
  losses here are contributions that sum to the global loss, never averaged after the fact;
* labels offset by rank: positives are indexed by their *global* position
  (:func:`rcl.losses.ntxent.nt_xent_rows`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0, the only rank that writes checkpoints, logs and reports."""
    return rank() == 0


def split(n: int, world: int, r: int) -> tuple[int, int]:
    """The samples ``[lo, hi)`` of a global batch of ``n`` that rank ``r`` of ``world`` computes:
    contiguous, sizes differing by at most one (the first ``n mod world`` ranks take one more)."""
    base, extra = divmod(n, world)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 of equal-shape tensors whose backward returns, to each rank, the sum
    over ranks of the gradient of its own slice (an all-reduce of the whole gradient, then the
    slice): works on every backend (gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # the all-reduce works in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def all_gather_with_grad(x: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``x`` (first dimensions may differ by rank; the others must match), in rank
    order, with autograd: the gradient flowing into rank r's part is summed over all ranks and
    returned to rank r. Outside a process group: ``[x]``."""
    if not is_distributed():
        return [x]
    sizes = all_reduce_sum(torch.tensor([x.shape[0] if i == rank() else 0 for i in range(world_size())],
                                        device=x.device)).tolist()
    top = max(sizes)
    padded = x if x.shape[0] == top else torch.cat([x, x.new_zeros((top - x.shape[0], *x.shape[1:]))])
    full = _GatherWithGrad.apply(padded)
    return [full[r * top:r * top + n] for r, n in enumerate(sizes)]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (no autograd; ``t`` itself outside a process group)."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sync_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks (one flat all-reduce); a no-op outside a process
    group. Parameters without a gradient count as zero. Each gradient keeps its parameter's memory
    format."""
    if not is_distributed():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    i = 0
    for p, g in zip(params, grads):
        n = g.numel()
        # empty_like keeps the parameter's strides (channels-last): the fused Adam kernel pairs a
        # parameter with its gradient as flat memory, so a row-major gradient would be misread
        p.grad = torch.empty_like(p).copy_(flat[i:i + n].view(p.shape))
        i += n


def global_count(local: int | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sum over ranks of a local count, as a float tensor on ``device`` (no autograd)."""
    t = torch.as_tensor(local, dtype=torch.float64, device=device).reshape(())
    return all_reduce_sum(t)


def global_mean(local_sum: torch.Tensor, local_count: int | torch.Tensor) -> torch.Tensor:
    """This rank's contribution to a mean over the global batch: ``local_sum / Σ_ranks count``
    (with autograd through ``local_sum``). The contributions of all ranks sum to the global mean,
    and :func:`sync_gradients` sums their gradients; outside a process group it is the plain mean."""
    if not is_distributed():
        return local_sum / local_count
    return local_sum / global_count(local_count, local_sum.device).to(local_sum.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`global_mean` of ``values[mask]`` (the blind-spot losses' mean over masked pixels)."""
    return global_mean(values[mask].sum(), mask.sum())


def launched_by_torchrun() -> bool:
    """True when the environment of ``torchrun`` (WORLD_SIZE > 1, RANK, MASTER_ADDR) is set."""
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (gloo for CPU tensors,
    NCCL for CUDA tensors when CUDA is available); a no-op (False) outside torchrun."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return is_distributed()
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())  # one GPU per rank, before NCCL starts
    dist.init_process_group(backend=backend)
    return True


def local_rank() -> int:
    """``LOCAL_RANK`` of torchrun (0 outside it): the GPU a rank uses on its machine."""
    import os

    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
