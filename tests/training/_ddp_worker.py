"""Helper of ``test_ddp.py``: the training steps compared between one process and two gloo ranks.

Imported by the test (the single-process references) and run as a script, once per rank, by the
test (``python _ddp_worker.py OUT SCENARIO...``) with the torchrun environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT): each rank joins the group with :func:`rcl.distributed.init_from_env`,
runs every scenario and saves its results to ``OUT/rank<r>.pt``; a scenario that raises records
its traceback instead.

Every scenario builds the same data and network on every rank (and in the reference process): the
global batch is 5 samples, so rank 0 computes 3 of them and rank 1 computes 2, of images of
different sizes.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

import torch

SEED, STEP = 11, 3
BATCH = 5  # odd: the ranks' shares differ (3 and 2)
CROP = 16
SIZES = [(20, 26), (24, 24), (18, 30), (28, 20), (22, 22), (26, 19), (17, 27)]

# kind -> method; the RCL runs use the default config except where named
KINDS = ("rcl", "rcl_recorruption", "simclr", "supervised", "n2v", "supervised_dncnn")
# guards: a known bug injected into the distributed run; its result must differ from the reference
BUGS = ("gather_no_reduce", "grad_averaged", "local_labels")
SCENARIOS = ["helpers", *KINDS, *(f"{k}+{b}" for k in ("rcl", "simclr") for b in BUGS)]


def images():
    """Seven grayscale images of different sizes, each with its own brightness, pattern and noise
    level (instances a contrastive loss can tell apart)."""
    from rcl.data.datasets import ImageSet

    g = torch.Generator().manual_seed(1234)
    ims = []
    for i, (h, w) in enumerate(SIZES):
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        pattern = torch.sin(xx * (0.3 + 0.25 * i) + yy * 0.2 * (i % 3)) * (0.05 + 0.04 * i)
        noise = torch.randn(h, w, generator=g) * (0.03 + 0.03 * i)
        ims.append((0.15 + 0.1 * i + pattern + noise).unsqueeze(0))
    return ImageSet(ims, [f"im{i}" for i in range(len(ims))])


def method_for(kind: str):
    """``(model, method, params)``, identical in every process (torch seeded before the network and
    the projection head)."""
    from rcl.data.noise import GaussianNoise
    from rcl.methods import RCL, SimCLR, Supervised, get_method
    from rcl.methods.rcl import RCLConfig
    from rcl.methods.simclr import SimCLRConfig
    from rcl.methods.supervised import FinetuneConfig
    from rcl.models.factory import ModelConfig, build_model
    from rcl.tasks import DenoiseTask

    torch.manual_seed(7)
    if kind == "supervised_dncnn":  # BatchNorm: fit's _prepare turns it into SyncBatchNorm under a process group
        from rcl.training.engine import Engine
        from rcl.training.fit import _prepare

        model, _ = _prepare(build_model(ModelConfig(arch="dncnn", width=8, depth=3)), Engine(device="cpu"))
        kind = "supervised"
    else:
        model = build_model(ModelConfig(width=8, depth=2))
    data, task = images(), DenoiseTask()
    if kind == "rcl":
        method = RCL(data, RCLConfig(steps=1, batch_images=BATCH, crop_size=CROP), task=task, model=model)
    elif kind == "rcl_recorruption":
        method = RCL(data, RCLConfig(steps=1, batch_images=BATCH, crop_size=CROP, consistency="recorruption"),
                     task=task, model=model)
    elif kind == "simclr":
        # PyTorch's default conv init shrinks the signal layer after layer: the pooled bottleneck
        # features of this small U-Net then hardly depend on the image, every projection points the
        # same way (the loss is log(2B - 1)) and the gradients are ~1e-5, too small for the
        # comparison to mean anything. He init (for the LeakyReLU) keeps the images apart.
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, a=0.1)
        method = SimCLR(data, SimCLRConfig(steps=1, batch_images=BATCH, crop_size=CROP), task=task, model=model)
    elif kind == "supervised":
        method = Supervised(data, FinetuneConfig(steps=1, batch_size=BATCH, crop_size=CROP), task=task,
                            model=model, noise=GaussianNoise(25 / 255))
    elif kind == "n2v":
        n2v = get_method("n2v")
        method = n2v(data, n2v.Config(steps=1, batch_size=BATCH, crop_size=CROP), task=task, model=model)
    else:
        raise ValueError(kind)
    named = [(f"model.{n}", p) for n, p in model.named_parameters()]
    named += [(f"extra.{i}", p) for i, p in enumerate(method.extra_parameters())]
    return model, method, named


def step(kind: str, rank: int | None = None, world: int | None = None, average: bool = False,
         t: int = STEP) -> dict:
    """One step of ``kind`` at step ``t``: ``{"loss", "grads": {name: gradient}, "rows"}`` (rows: the
    local batch's first dimension). ``rank``/``world`` None: from the process group; the loss is
    then the sum of the ranks' contributions and the gradients are synced."""
    from rcl.data.draws import Draws
    from rcl.distributed import all_reduce_sum, is_distributed, sync_gradients, world_size

    model, method, named = method_for(kind)
    draws = Draws(SEED, t, "batch", "cpu", rank=rank, world=world, layout=method.layout())
    rows = method.batch(Draws(SEED, t, "batch", "cpu", rank=rank, world=world, layout=method.layout()))[0].shape[0]
    loss, _ = method.loss(model, draws)
    loss.backward()
    params = [p for _, p in named]
    if is_distributed():
        sync_gradients(params)
        if average:  # bug (ii): averaging the gradients instead of summing the contributions
            for p in params:
                p.grad /= world_size()
    total = all_reduce_sum(loss.detach().to(torch.float64))
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in named}  # no gradient counts as zero (as in sync_gradients)
    return {"loss": float(total), "grads": grads, "rows": rows}


@contextlib.contextmanager
def injected(bug: str | None):
    """Inject one of the classic bugs for the duration of the block (none: ``bug`` None)."""
    import rcl.distributed as rd
    import rcl.losses.ntxent as nx

    if bug is None or bug == "grad_averaged":
        yield
        return
    if bug == "gather_no_reduce":  # (i) the gradient of the gathered negatives stays where it arrives
        old = rd._GatherWithGrad.backward

        def backward(ctx, grad):
            return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]

        rd._GatherWithGrad.backward = staticmethod(backward)
        try:
            yield
        finally:
            rd._GatherWithGrad.backward = old
        return
    if bug == "local_labels":  # (iii) positives indexed by local instead of global rows
        old = nx.gather_views

        def gather_views(x, gather_distributed=True):
            feats, rows = old(x, gather_distributed)
            return feats, torch.arange(len(rows), device=rows.device)

        nx.gather_views = gather_views
        try:
            yield
        finally:
            nx.gather_views = old
        return
    raise ValueError(bug)


def helpers() -> dict:
    """The helpers on this rank: ``all_gather_with_grad`` of a (r + 2, 3) tensor (sizes differ by
    rank) with a rank-dependent linear loss, of a tensor that is empty on rank 1, and
    ``global_mean`` of r + 3 values."""
    from rcl.distributed import all_gather_with_grad, all_reduce_sum, global_mean, rank, world_size

    r = rank()
    x = (torch.arange((r + 2) * 3, dtype=torch.float64).reshape(r + 2, 3) + 100 * r).requires_grad_()
    parts = all_gather_with_grad(x)
    full = torch.cat(parts)
    weights = gather_weights(r, full.shape[0])
    (full * weights).sum().backward()
    # a rank with nothing to send (a world larger than the batch): rank 0 sends 2 rows, rank 1 none
    y = torch.full((2 if r == 0 else 0, 2), float(r + 1), dtype=torch.float64).requires_grad_()
    y_parts = all_gather_with_grad(y)
    (torch.cat(y_parts) * (r + 1)).sum().backward()
    v = (torch.arange(r + 3, dtype=torch.float64) * (r + 1) + 0.5).requires_grad_()
    contrib = global_mean(v.sum(), v.numel())
    contrib.backward()
    return {"parts": [p.detach() for p in parts], "x": x.detach(), "x_grad": x.grad, "world": world_size(),
            "y_parts": [p.detach() for p in y_parts], "y_grad": y.grad,
            "mean_sum": float(all_reduce_sum(contrib.detach())), "v": v.detach(), "v_grad": v.grad}


def gather_weights(r: int, rows: int) -> torch.Tensor:
    """The weights of rank r's loss Σ w ⊙ gathered (so the gradient of the gathered tensor is w)."""
    return torch.arange(rows * 3, dtype=torch.float64).reshape(rows, 3) * (r + 1) + 10 * r


def run(scenario: str):
    if scenario == "helpers":
        return helpers()
    kind, _, bug = scenario.partition("+")
    with injected(bug or None):
        return step(kind, average=bug == "grad_averaged")


def main(argv: list[str]) -> int:
    from rcl.distributed import init_from_env, rank, shutdown

    torch.set_num_threads(1)
    out, scenarios = argv[0], argv[1:]
    if not init_from_env():
        print("not in a process group (RANK/WORLD_SIZE unset)", file=sys.stderr)
        return 2
    results = {}
    try:
        for s in scenarios:
            try:
                results[s] = run(s)
            except Exception:
                results[s] = {"error": traceback.format_exc()}
        torch.save(results, f"{out}/rank{rank()}.pt")
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
