"""Distributed training with real processes on CPU (gloo): sharding, equality with one rank,
evaluation that counts each sample once, one writer, resume (with the same or another world
size), restarts and preemption."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from dlhpc.cli import main
from dlhpc.data import DataConfig
from dlhpc.data.batches import ImageBatches
from dlhpc.engine.checkpoint import CHECKPOINT, checkpoint_world_size
from dlhpc.engine.config import RunConfig, TrainConfig
from dlhpc.engine.distributed import Dist, init_distributed
from dlhpc.engine.env import ClusterEnv, detect_env, first_host, resolve_threads
from dlhpc.engine.evaluate import evaluate
from dlhpc.errors import ConfigError, DlhpcError
from dlhpc.models import ModelConfig
from dlhpc.models.cnn import TutorialCNN

TRAIN = ["train", "mlp", "--data", "digits", "--hidden", "32", "--augment", "none",
         "--batch-size", "64", "--threads", "1", "--quiet", "--json"]  # fmt: skip


def dlhpc(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlhpc", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    t = load_file(path)
    return {k.removeprefix("model."): v for k, v in t.items() if not k.startswith(("optim", "rng"))}


@pytest.mark.parametrize(("n", "world"), [(10, 2), (7, 2), (7, 3), (2, 4), (128, 3)])
def test_parts_are_disjoint_and_cover(n: int, world: int) -> None:
    parts = [Dist(ClusterEnv(rank=r, world_size=world), torch.device("cpu")).part(n)
             for r in range(world)]  # fmt: skip
    covered = [i for p in parts for i in range(n)[p]]
    assert covered == list(range(n))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [len(t) for t in torch.tensor_split(torch.arange(n), world)]


def test_launcher_variables_are_read() -> None:
    slurm = detect_env({"SLURM_PROCID": "3", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4",
                        "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
                        "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "cn[07-08]",
                        "SLURM_CPUS_PER_TASK": "8", "SLURM_JOB_ID": "1234"})  # fmt: skip
    assert (slurm.rank, slurm.world_size, slurm.local_rank, slurm.local_world_size) == (3, 4, 1, 2)
    assert slurm.master_addr == "cn07" and slurm.nodes == 2 and slurm.cpus_per_task == 8
    assert slurm.master_port == 21234 and slurm.launcher == "slurm"
    assert first_host("gpu1,gpu2") == "gpu1" and first_host("n[1,3-5]") == "n1"
    # an salloc shell (no srun step) is one process
    assert detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}).world_size == 1
    with pytest.raises(ConfigError, match="exceeds"):
        resolve_threads(ClusterEnv(local_world_size=4, cpus_per_task=1), 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_buckets_are_a_quarter_of_the_gradients_within_bounds() -> None:
    from dlhpc.engine.distributed import DDP_BUCKET_MB, MIN_BUCKET_MB, bucket_cap_mb

    cnn = TutorialCNN(1, 28, 28, 10)  # 93,322 fp32 parameters: 373 kB
    assert bucket_cap_mb(cnn) == pytest.approx(93_322 * 4 / 2**20 / 4)
    frozen = TutorialCNN(1, 28, 28, 10).requires_grad_(False)
    assert bucket_cap_mb(frozen) == MIN_BUCKET_MB
    assert bucket_cap_mb(torch.nn.Linear(4096, 8192)) == DDP_BUCKET_MB  # 128 MB of weights


def _eval_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    env = ClusterEnv(rank=rank, world_size=world, master_port=port, local_world_size=world)
    dist = init_distributed(env, torch.device("cpu"), 60)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    g = torch.Generator().manual_seed(1)
    data = ImageBatches(torch.rand(7, 1, 2, 2, generator=g), torch.randint(0, 3, (7,), generator=g))
    r = evaluate(model, data, 3, batch_size=2, dist=dist)
    if rank == 0:
        Path(out).write_text(json.dumps({"loss": r.loss, "acc": r.accuracy, "n": r.samples,
                                         "confusion": r.confusion.tolist()}))  # fmt: skip
    dist.close()


@pytest.mark.slow
def test_evaluation_counts_every_sample_once(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    mp.spawn(_eval_worker, args=(3, free_port(), str(out)), nprocs=3, join=True)
    got = json.loads(out.read_text())
    torch.manual_seed(0)  # the same model and data in one process
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    g = torch.Generator().manual_seed(1)
    data = ImageBatches(torch.rand(7, 1, 2, 2, generator=g), torch.randint(0, 3, (7,), generator=g))
    one = evaluate(model, data, 3, batch_size=2)
    assert got["n"] == 7 and sum(map(sum, got["confusion"])) == 7  # 7 over 3 ranks: 3+2+2
    assert got["confusion"] == one.confusion.tolist()
    assert got["loss"] == pytest.approx(one.loss) and got["acc"] == pytest.approx(one.accuracy)
    assert not tdist.is_initialized()


def _threads() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended while we looked
            names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
    return sorted(names)


def _gloo_threads_after_close(limit_s: float = 5.0) -> list[str]:
    """gloo's threads still running once ``limit_s`` has passed since close (the loop thread
    may end a moment after close returns; a group that is never freed keeps them all)."""
    end = time.monotonic() + limit_s
    while (left := [n for n in _threads() if "gloo" in n]) and time.monotonic() < end:
        time.sleep(0.01)
    return left


def _train_a_step(dist: Dist, shared: bool) -> None:
    """What the loop does: a DDP wrapper made, trained and dropped inside a function."""
    dist.shared_memory = shared
    model = torch.nn.Linear(4, 2)
    net = dist.wrap(model)
    net(torch.randn(3, 4)).sum().backward()


def _close_worker(rank: int, world: int, port: int, shared: bool, out: str) -> None:
    torch.set_num_threads(1)
    env = ClusterEnv(rank=rank, world_size=world, master_port=port, local_world_size=world)
    dist = init_distributed(env, torch.device("cpu"), 60)
    gc.disable()  # the dropped wrapper is collected by close, not by a collection by chance
    _train_a_step(dist, shared)
    during = _threads()
    dist.close()
    gloo_after = _gloo_threads_after_close()
    after = _threads()
    gc.enable()
    Path(out, f"{rank}.json").write_text(
        json.dumps({"during": during, "after": after, "gloo_after": gloo_after})
    )


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("shared", [True, False])
def test_close_frees_the_group_and_ends_its_threads(tmp_path: Path, shared: bool) -> None:
    mp.spawn(_close_worker, args=(2, free_port(), shared, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        gloo = [name for name in got["during"] if "gloo" in name]
        assert len(gloo) >= 2, got["during"]  # the group's threads were there ...
        assert got["gloo_after"] == []  # ... and have ended
        assert "pt_tcpstore_uv" not in got["after"]  # rank 0's store server too


@pytest.mark.slow
def test_two_ranks_match_one_rank_and_only_rank_0_writes(tmp_path: Path) -> None:
    one = dlhpc(*TRAIN, "--out", str(tmp_path / "one"), "--max-steps", "8")
    two = dlhpc(*TRAIN, "--out", str(tmp_path / "two"), "--max-steps", "8", "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout.strip().splitlines()[-1])["stopped_by"] == "max_steps"
    assert "Warning" not in two.stderr, two.stderr  # e.g. DDP's deprecated-flag warning per rank
    a, b = weights(tmp_path / "one" / CHECKPOINT), weights(tmp_path / "two" / CHECKPOINT)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # one writer: a single checkpoint file and no stray temporary files
    files = sorted(p.name for p in (tmp_path / "two" / "checkpoint").iterdir())
    assert files == ["state.safetensors"]


@pytest.mark.slow
def test_resume_with_two_ranks_equals_uninterrupted(tmp_path: Path) -> None:
    base = [*TRAIN, "--epochs", "2", "--nproc", "2"]
    whole = dlhpc(*base, "--out", str(tmp_path / "whole"))
    part = dlhpc(*base, "--out", str(tmp_path / "part"), "--max-steps", "30")
    assert whole.returncode == 0 and part.returncode == 0, part.stderr
    resumed = dlhpc("train", "--resume", str(tmp_path / "part"), "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "part" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    epochs = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2]  # rank 0 alone logs


def records(run: Path, kind: str) -> list[dict[str, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").open()]
    return [r for r in lines if r["kind"] == kind]


# 2 epochs of 23 steps (1,438 training digits, global batch 64), a train-loss record every 5
RESIZE = [*TRAIN, "--epochs", "2", "--log-every", "5"]


@pytest.fixture(scope="module")
def one_rank_whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One rank, uninterrupted: what a run resumed with another world size must end as."""
    run = tmp_path_factory.mktemp("whole") / "run"
    done = dlhpc(*RESIZE, "--out", str(run))
    assert done.returncode == 0, done.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then", "stop"), [(2, 1, 10), (1, 2, 30)])
def test_resume_with_another_world_size_equals_one_rank(
    tmp_path: Path, one_rank_whole: Path, first: int, then: int, stop: int
) -> None:
    """``first`` ranks stop mid-epoch (step ``stop``), ``then`` ranks resume to the end."""
    run = tmp_path / "run"
    part = dlhpc(*RESIZE, "--out", str(run), "--max-steps", str(stop), "--nproc", str(first))
    assert part.returncode == 0, part.stderr
    assert checkpoint_world_size(run) == first
    resumed = dlhpc("train", "--resume", str(run), "--nproc", str(then), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint written by {first} rank(s), continuing with {then}" in resumed.stdout
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == then and summary["epochs"] == 2
    shares = summary["waiting_share"], summary["exchange_share"]
    if summary["gradient_exchange"] == "shared memory":  # measured over this process's steps
        assert all(0 < x < 1 for x in shares) and sum(shares) < 1, shares
    else:
        assert shares == (None, None)
    assert checkpoint_world_size(run) == then
    # the tolerance of two ranks against one: DDP sums the gradient in another order
    a, b = load_file(one_rank_whole / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # the epoch cut by the resume counts its loss and hits once: rank 0 carries the global sums
    whole, cut = records(one_rank_whole, "epoch"), records(run, "epoch")
    assert [r["epoch"] for r in cut] == [1, 2]
    for w, c in zip(whole, cut, strict=True):
        assert c["train_loss"] == pytest.approx(w["train_loss"], rel=1e-4)
        assert c["train_accuracy"] == pytest.approx(w["train_accuracy"], abs=1e-3)
        assert c["test_accuracy"] == pytest.approx(w["test_accuracy"], abs=1e-3)
    # the logged train loss is the global batch's mean, before and after the change
    logged = {r["step"]: r["loss"] for r in records(run, "step")}
    one = {r["step"]: r["loss"] for r in records(one_rank_whole, "step")}
    assert logged.keys() == one.keys() and len(one) == 9
    for step, loss in logged.items():
        assert loss == pytest.approx(one[step], rel=1e-4), step


def test_resume_refuses_more_ranks_than_the_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    cfg = RunConfig(DataConfig("digits"), ModelConfig("mlp"), train=TrainConfig(batch_size=1))
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert checkpoint_world_size(run) is None  # none written yet
    monkeypatch.setenv("RANK", "0")  # rank 0 of 2, as torchrun starts it
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "global batch 1 cannot be split among 2 ranks; resume it with 1 rank(s)" in err


def test_nproc_refuses_before_any_rank_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What every rank would refuse is said once, and no launcher starts."""
    import torch.distributed.run as launcher

    def no_launch(*_: object) -> None:
        raise AssertionError("the launcher started")

    monkeypatch.setattr(launcher, "run", no_launch)
    argv = ["train", "mlp", "--data", "digits", "--out", str(tmp_path / "r"), "--quiet"]
    assert main([*argv, "--nproc", "4", "--batch-size", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dlhpc train: error: --batch-size 2 is the global batch: it must be at least the world "
        "size 4"
    )
    from dlhpc.engine.env import available_cores

    more = available_cores() + 1  # CPU ranks beyond the cores only contend for them
    assert main([*argv, "--nproc", str(more), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dlhpc train: error: --nproc {more}: CPU ranks need a core each, and {more - 1} "
        f"core(s) are available here; use --nproc {more - 1} or fewer"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main([*argv, "--nproc", "2", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2 ranks per node need as many GPUs; this node has 1" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_sigterm_stops_at_a_step_with_a_checkpoint_and_exit_75(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlhpc", *TRAIN, "--epochs", "200",
                             "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (run / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "SIGTERM"
    assert "Traceback" not in err
    resumed = dlhpc("train", "--resume", str(run), "--epochs", "3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_a_killed_rank_is_restarted_from_the_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dlhpc", *TRAIN, "--epochs", "6", "--nproc", "2",
           "--max-restarts", "1", "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True,
                             check=False).stdout.split()  # fmt: skip
    assert workers, "no worker processes found"
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["world_size"] == 2


def _hang_worker(rank: int, world: int, port: int, out: str) -> None:
    env = ClusterEnv(rank=rank, world_size=world, master_port=port, local_world_size=world)
    dist = init_distributed(env, torch.device("cpu"), 3)
    if rank == 0:
        try:
            dist.barrier()  # rank 1 never comes
        except DlhpcError as e:
            Path(out).write_text(str(e))
    else:
        time.sleep(8)
    dist.close()


@pytest.mark.slow
def test_a_hanging_collective_names_the_missing_rank(tmp_path: Path) -> None:
    out = tmp_path / "err.txt"
    mp.spawn(_hang_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    message = out.read_text()
    assert "timed out" in message and "Ranks 1 failed" in message  # the missing rank, named
    assert "\n" not in message
