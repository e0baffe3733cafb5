"""Distributed correctness: N gloo ranks on the CPU compute exactly the step of one process.

rcl does not use DistributedDataParallel: every rank returns its contribution to the global loss
and :func:`rcl.distributed.sync_gradients` sums the gradients (see ``rcl/distributed.py``). These
tests check that contract where it is easy to get wrong:

* the helpers (``all_gather_with_grad`` with ranks of different sizes, ``global_mean``, ``split``)
  against closed forms;
* one step of RCL (EMD + blind-spot, and the recorruption variant with its two forward passes),
  SimCLR (with its projection head), supervised fine-tuning and Noise2Void on an *asymmetric* batch
  (5 samples: 3 on rank 0, 2 on rank 1, images of different sizes): the loss summed over the ranks
  and every gradient on every rank equal the single-process ones to 1e-5;
* the three classic bugs (a gather whose backward does not reduce, gradients averaged instead of
  summed, labels offset by rank), injected one at a time: each makes the comparison fail, so the
  comparison can fail;
* ``torchrun -m rcl pretrain`` on 2 ranks writes the checkpoint of the same run on one process.

The two ranks are plain processes (``_ddp_worker.py``, one per rank, the torchrun environment set
by hand); they run every scenario once for the whole module and save their results, which the
tests compare with the same steps computed here, in one process.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from rcl.data.draws import Draws
from rcl.distributed import split

HERE = Path(__file__).resolve().parent
WORKER_PATH = HERE / "_ddp_worker.py"
TOL = 1e-5
WORLD = 2
TIMEOUT_S = 240


def _gloo_available() -> bool:
    return dist.is_available() and dist.is_gloo_available()


needs_gloo = pytest.mark.skipif(not _gloo_available(),
                                reason="torch.distributed with the gloo backend is not available in this torch build")


def _load_worker():
    spec = importlib.util.spec_from_file_location("_rcl_ddp_worker", WORKER_PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


W = _load_worker()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(port: int | None = None, rank: int | None = None) -> dict:
    """This process's environment with one torch thread and no torchrun variables; ``port``: the
    rendezvous address; ``rank``: the variables torchrun sets for that rank."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "TORCHELASTIC_RUN_ID"):
        env.pop(k, None)
    if port is not None:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if rank is not None:
        env.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD))
    return env


def _launch(out: Path) -> tuple[list[int], list[str]]:
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER_PATH), str(out), *W.SCENARIOS], env=rank_env(port, r),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the {WORLD} gloo ranks did not finish within {TIMEOUT_S} s (a collective out of step?)")
    return [p.returncode for p in procs], logs


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Every scenario's result on each rank: ``[results of rank 0, results of rank 1]``."""
    if not _gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    out = tmp_path_factory.mktemp("ddp")
    codes, logs = _launch(out)
    if any(codes) and any("address already in use" in log.lower() for log in logs):
        codes, logs = _launch(out)  # the free port was taken in between: once more on another
    if any(codes):
        pytest.fail("gloo ranks failed:\n" + "\n".join(f"--- rank {r} (exit {c}):\n{log[-4000:]}"
                                                       for r, (c, log) in enumerate(zip(codes, logs))))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


_REFS: dict[str, dict] = {}


def reference(kind: str) -> dict:
    """The step of ``kind`` in this process, one rank (``Draws(rank=0, world=1)``)."""
    if kind not in _REFS:
        _REFS[kind] = W.step(kind, rank=0, world=1)
    return _REFS[kind]


def result(ranks, scenario: str, r: int) -> dict:
    res = ranks[r][scenario]
    if "error" in res:
        pytest.fail(f"{scenario} raised on rank {r}:\n{res['error']}")
    return res


def differences(got: dict, ref: dict) -> tuple[float, float, str]:
    """``(|Δ loss|, max |Δ gradient|, the parameter where it is largest)``."""
    assert got["grads"].keys() == ref["grads"].keys()
    worst = max(ref["grads"], key=lambda n: float((got["grads"][n] - ref["grads"][n]).abs().max()))
    return (abs(got["loss"] - ref["loss"]), float((got["grads"][worst] - ref["grads"][worst]).abs().max()), worst)


# ------------------------------------------------------------------ helpers, in this process

@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_split_is_contiguous_balanced_and_covers(world):
    for n in range(0, 23):
        parts = [split(n, world, r) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:])), parts  # contiguous, in rank order
        sizes = [hi - lo for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True), (n, world, sizes)
        assert sum(sizes) == n


@pytest.mark.parametrize("world", [2, 3])
def test_draws_of_the_ranks_are_slices_of_one_rank(world):
    """Every kind of draw, on each rank of ``world``, is that rank's slice of the one-rank draw."""
    n, k = 5, 2

    def draws_of(d: Draws, lo: int, hi: int):
        b = hi - lo
        return [d.rand(n, 2), d.randn(n, 3), d.randint(7, n), d.below(torch.tensor([3, 4, 5, 6, 7])[lo:hi], n),
                d.sample_rand(k * b, 4), d.sample_randn(k * b, 2), d.sample_randint(9, k * b, 3),
                d.sample_poisson(torch.full((k * b, 3), 4.0)), d.shared_randperm(n)]

    one = draws_of(Draws(3, 5, "loss", "cpu", rank=0, world=1, layout=(k, n)), 0, n)
    per_rank = [draws_of(Draws(3, 5, "loss", "cpu", rank=r, world=world, layout=(k, n)), *split(n, world, r))
                for r in range(world)]
    for i, ref in enumerate(one):
        got = [d[i] for d in per_rank]
        if i == 8:  # shared: the same on every rank
            assert all(torch.equal(g, ref) for g in got)
        elif i >= 4:  # per-row draws: k groups of each rank's samples
            groups = [torch.cat([g.reshape(k, -1, *g.shape[1:])[j] for g in got]) for j in range(k)]
            assert torch.equal(torch.cat(groups), ref), i
        else:
            assert torch.equal(torch.cat(got), ref), i


def test_per_row_draws_without_layout_are_refused_on_several_ranks():
    """Without the layout a rank cannot know the global position of its rows: per-row draws (the
    Poisson ones included) are refused rather than drawing rank 0's numbers on every rank."""
    d = Draws(3, 5, "loss", "cpu", rank=1, world=2)
    with pytest.raises(RuntimeError, match="layout"):
        d.sample_rand(2, 3)
    with pytest.raises(RuntimeError, match="layout"):
        d.sample_poisson(torch.full((2, 3), 4.0))


# ------------------------------------------------------------------ helpers, on 2 gloo ranks

@needs_gloo
def test_all_gather_with_grad_orders_ranks_and_sums_gradients(ranks):
    h = [result(ranks, "helpers", r) for r in range(WORLD)]
    assert [x["world"] for x in h] == [WORLD] * WORLD
    xs = [torch.arange((r + 2) * 3, dtype=torch.float64).reshape(r + 2, 3) + 100 * r for r in range(WORLD)]
    total = sum(x.shape[0] for x in xs)
    lo = 0
    for r in range(WORLD):
        assert torch.equal(h[r]["x"], xs[r])
        assert len(h[r]["parts"]) == WORLD
        for p, x in zip(h[r]["parts"], xs):  # every rank's tensor, in rank order, sizes 2 and 3
            assert torch.equal(p, x)
        # rank r' backpropagates w_r' into the gathered tensor: rank r gets Σ_r' of its own rows
        expected = sum(W.gather_weights(q, total) for q in range(WORLD))[lo:lo + xs[r].shape[0]]
        assert torch.equal(h[r]["x_grad"], expected), (r, h[r]["x_grad"], expected)
        lo += xs[r].shape[0]
    # rank 1 sends nothing: its part is empty, rank 0's gradient is summed over both ranks' weights
    for r in range(WORLD):
        assert [tuple(p.shape) for p in h[r]["y_parts"]] == [(2, 2), (0, 2)]
        assert torch.equal(h[r]["y_parts"][0], torch.ones(2, 2, dtype=torch.float64))
    assert torch.equal(h[0]["y_grad"], torch.full((2, 2), sum(q + 1 for q in range(WORLD)), dtype=torch.float64))
    assert h[1]["y_grad"].shape == (0, 2)


@needs_gloo
def test_global_mean_contributions_sum_to_the_global_mean(ranks):
    h = [result(ranks, "helpers", r) for r in range(WORLD)]
    values = torch.cat([x["v"] for x in h])
    for r in range(WORLD):
        assert h[r]["mean_sum"] == pytest.approx(float(values.mean()), abs=1e-12)
        # d(Σ_ranks contributions)/dv = 1/N for every value of every rank
        assert torch.allclose(h[r]["v_grad"], torch.full_like(h[r]["v"], 1 / len(values)))


# ------------------------------------------------------------------ one step: 2 ranks == 1 process

STEP_KINDS = ["rcl", "rcl_recorruption", "simclr", "supervised", "n2v"]


@needs_gloo
@pytest.mark.parametrize("kind", STEP_KINDS)
def test_step_on_two_ranks_equals_one_process(ranks, kind):
    ref = reference(kind)
    # not a vacuous comparison: the gradients are far above the tolerance
    assert max(float(g.abs().max()) for g in ref["grads"].values()) > 1e3 * TOL
    groups = ref["rows"] // W.BATCH  # 2 views (rcl, simclr) or 1 crop (supervised, n2v) per sample
    for r in range(WORLD):
        got = result(ranks, kind, r)
        lo, hi = split(W.BATCH, WORLD, r)
        assert got["rows"] == groups * (hi - lo)  # asymmetric: rank 0 computes 3 samples, rank 1 two
        d_loss, d_grad, where = differences(got, ref)
        assert d_loss <= TOL, f"{kind}, rank {r}: summed loss {got['loss']} vs {ref['loss']} (|Δ| {d_loss:.3g})"
        assert d_grad <= TOL, f"{kind}, rank {r}: gradient of {where} differs by {d_grad:.3g} (> {TOL})"


@needs_gloo
def test_batchnorm_network_on_cpu_ranks_is_refused_clearly(ranks):
    """DnCNN (BatchNorm) through fit's ``_prepare`` on gloo CPU ranks: SyncBatchNorm has no CPU
    kernel, and per-rank BatchNorm statistics would not be the global batch's, so fit refuses it
    with one clear message instead of training something that differs from one process."""
    for r in range(WORLD):
        err = ranks[r]["supervised_dncnn"].get("error", "")
        assert "trains on several ranks on CUDA only" in err, f"rank {r}: {err or 'no error'}"


# ------------------------------------------------------------------ the comparison catches the classic bugs

@needs_gloo
@pytest.mark.parametrize("bug", W.BUGS)
@pytest.mark.parametrize("kind", ["rcl", "simclr"])
def test_each_classic_bug_makes_the_comparison_fail(ranks, kind, bug):
    """(i) ``gather_no_reduce``: the gather's backward returns the local slice without the
    all-reduce; (ii) ``grad_averaged``: the synced gradients are divided by the world size;
    (iii) ``local_labels``: ``gather_views`` returns local row indices arange(2b)."""
    ref = reference(kind)
    for r in range(WORLD):
        d_loss, d_grad, where = differences(result(ranks, f"{kind}+{bug}", r), ref)
        assert d_grad > 10 * TOL, f"{kind} with {bug}: rank {r}'s gradients still match ({d_grad:.3g})"


# ------------------------------------------------------------------ end to end: torchrun -m rcl pretrain

E2E_STEPS = 20
E2E_TOL = 2e-4
"""The issue's 20 steps. The float rounding of the two ways of summing the gradients (≈1e-7) is
amplified by Adam, whose first steps move every weight by ≈ lr whatever the gradient's size: after
20 steps the two checkpoints differ by ≈3.5e-5 (weights perturbed by 1e-7 in one process end 8e-4
apart), while each classic bug gives ≥ 8.5e-3 after 20 steps. Hence a tolerance of 2e-4 here."""


def _write_images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 52), (48, 48), (36, 60), (44, 40), (52, 36), (38, 46)]):
        yy, xx = np.mgrid[0:h, 0:w]
        a = 0.2 + 0.1 * i + 0.1 * np.sin(xx * (0.2 + 0.1 * i) + yy * 0.1 * i) + 0.05 * rng.standard_normal((h, w))
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(folder / f"im{i}.png")


@needs_gloo
def test_torchrun_pretrain_writes_the_checkpoint_of_one_process(tmp_path):
    from safetensors.torch import load_file

    _write_images(tmp_path / "data")
    args = ["pretrain", "data", "--steps", str(E2E_STEPS), "--batch-images", "5", "--crop-size", "16",
            "--width", "8", "--depth", "2", "--no-progress", "--noise", "gaussian:25"]
    one = subprocess.run([sys.executable, "-m", "rcl", *args, "--out", "one.safetensors"], cwd=tmp_path,
                         env=rank_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert one.returncode == 0, one.stderr[-4000:]
    port = free_port()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
                          str(WORLD), "--master-addr", "127.0.0.1", "--master-port", str(port),
                          "-m", "rcl", *args, "--out", "two.safetensors"],
                         cwd=tmp_path, env=rank_env(port), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    a, b = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert a.keys() == b.keys()
    diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= E2E_TOL, f"max |Δ| {diffs[worst]:.3g} in {worst} (tolerance {E2E_TOL})"
    moved = max(float((a[k].double() - v.double()).abs().max()) for k, v in _initial_weights().items())
    assert moved > 20 * E2E_TOL  # the runs trained (≈ 3e-3 here): equal checkpoints are not two untouched networks


def _initial_weights() -> dict:
    """The network ``rcl pretrain --width 8 --depth 2 --seed 0`` starts from."""
    from rcl.models.factory import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(width=8, depth=2)).state_dict()


def _torchrun(args: list[str], cwd: Path, port: int, **kw):
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(WORLD),
            "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "rcl", *args]


@needs_gloo
def test_torchrun_refuses_a_global_batch_smaller_than_the_ranks(tmp_path):
    _write_images(tmp_path / "data")
    port = free_port()
    res = subprocess.run(_torchrun(["finetune", "data", "--steps", "3", "--batch-size", "1", "--crop-size", "16",
                                    "--width", "8", "--depth", "2", "--no-progress", "--out", "ft.safetensors"],
                                   tmp_path, port),
                         cwd=tmp_path, env=rank_env(port), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode != 0
    assert "error: a global batch of 1 crops (--batch-size) cannot be shared by 2 ranks" in res.stderr, res.stderr[-3000:]
    assert not _rcl_frames(res.stderr) and not (tmp_path / "ft.safetensors").exists()  # torchrun's own traceback only


@needs_gloo
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    """Whichever rank is signalled, all stop after one agreed step and rank 0 saves the state."""
    import signal
    import time

    _write_images(tmp_path / "data")
    port = free_port()
    args = ["pretrain", "data", "--steps", "3000", "--batch-images", "4", "--crop-size", "16", "--width", "8",
            "--depth", "2", "--no-progress", "--log-every", "1", "--save-every", "10000", "--out", "m.safetensors"]
    env = rank_env(port)
    env["MASTER_PORT"] = str(port)
    proc = subprocess.Popen(_torchrun(args, tmp_path, port), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out = []
        for line in proc.stdout:
            out.append(line)
            if "step 20/" in line:
                break
        pid = None
        deadline = time.monotonic() + 30
        while pid is None and time.monotonic() < deadline:
            pid = next((int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_rank(p, port, 1)),
                       None)
        assert pid is not None, "rank 1's process not found"
        os.kill(pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(out)
    state = tmp_path / "m.state.safetensors"
    assert state.exists(), text[-3000:]
    assert "error: stopped by SIGTERM after step" in text and not _rcl_frames(text), text[-3000:]
    stops = {ln.split("after step ")[1].split(";")[0] for ln in text.splitlines() if "stopped by SIGTERM after step" in ln}
    assert len(stops) == 1, f"the ranks stopped after different steps: {stops}"
    assert not (tmp_path / "m.safetensors").exists()


def _rcl_frames(text: str) -> list[str]:
    """Traceback lines in rcl's own code (torchrun prints its own traceback when a rank fails)."""
    import re

    return re.findall(r'File "[^"]*[/\\\\]rcl[/\\\\][^"]*"', text)


def _is_rank(proc_dir: Path, port: int, rank: int) -> bool:
    try:
        env = set((proc_dir / "environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    return f"RANK={rank}".encode() in env and f"MASTER_PORT={port}".encode() in env \
        and b"TORCHELASTIC_RUN_ID" in b"\0".join(env) and (proc_dir / "cmdline").read_bytes().find(b"rcl") >= 0
