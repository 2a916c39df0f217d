"""Optimizers: SparseAdam for sparse embedding tables joined with the dense optimizer, its
checkpoint and resume, DDP (gloo) with sparse gradients, and the fused-Adam choice."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from dlhpc.data import DataConfig
from dlhpc.engine import optim
from dlhpc.engine.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
from dlhpc.engine.distributed import Dist, init_distributed
from dlhpc.engine.env import ClusterEnv
from dlhpc.engine.jobs import train_job
from dlhpc.engine.optim import (
    SparseDenseOptimizer,
    adam_fused,
    build_optimizer,
    split_sparse_parameters,
)
from dlhpc.errors import ConfigError
from dlhpc.models import ModelConfig
from dlhpc.models.cnn import TutorialCNN
from dlhpc.models.text import BagClassifier

from .conftest import assert_same_weights
from .test_distributed import free_port
from .test_text_pipeline import corpus, write_csv

# three sequences touching rows {2, 3, 4, 5} and bigram rows 40 + hash: never row 6 and up to 39
IDS = torch.tensor([2, 3, 4, 5])
OFFSETS = torch.tensor([0, 3, 3, 4])
Y = torch.tensor([0, 1, 2])


def sparse_bag(seed: int = 0) -> BagClassifier:
    torch.manual_seed(seed)
    return BagClassifier(40, 3, embed_dim=8, hidden=6, bigram_buckets=11, sparse=True)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor = IDS,
               offsets: torch.Tensor = OFFSETS, y: torch.Tensor = Y) -> None:  # fmt: skip
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(ids, offsets), y).backward()  # type: ignore[no-untyped-call]
    opt.step()


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# --------------------------------------------------------------------------- the combined optimizer


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_sparse_table_gets_sparse_adam_and_the_rest_the_configured_optimizer(name: str) -> None:
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(optimizer=name, lr=1e-2), model)
    assert isinstance(opt, SparseDenseOptimizer)
    dense, sparse = opt.parts
    assert isinstance(sparse, torch.optim.SparseAdam)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    assert isinstance(dense, kind) and (name == "adamw") == isinstance(dense, torch.optim.AdamW)
    assert [p for g in sparse.param_groups for p in g["params"]] == [model.embedding.weight]
    assert {id(p) for g in dense.param_groups for p in g["params"]} == {
        id(p) for p in model.dense_parameters()
    }


def test_a_step_moves_only_the_touched_rows_and_every_dense_parameter() -> None:
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(lr=1e-2), model)
    before = params(model)
    train_step(model, opt)
    after = params(model)
    w0, w1 = before.pop("embedding.weight"), after.pop("embedding.weight")
    moved = (w0 != w1).any(1).nonzero().flatten().tolist()
    touched = model.embedding.weight.grad.coalesce().indices()[0].tolist()  # type: ignore[union-attr]
    assert moved == sorted(set(touched)) and {2, 3, 4, 5} <= set(moved) and len(moved) == 6
    assert all(not torch.equal(before[k], after[k]) for k in before)  # fc1, fc2 all moved
    # lazy Adam: a row touched before and not now stays put (dense Adam would keep moving it)
    w_before = model.embedding.weight.detach().clone()
    train_step(model, opt, torch.tensor([7, 8]), torch.tensor([0, 2]), torch.tensor([1]))
    moved = (w_before != model.embedding.weight).any(1).nonzero().flatten().tolist()
    assert 7 in moved and 8 in moved and not {2, 3, 4, 5} & set(moved)


def test_lr_set_on_the_groups_reaches_both_parts_also_after_loading() -> None:
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(lr=1e-2), model)
    train_step(model, opt)
    fresh = build_optimizer(OptimConfig(lr=1e-2), model)
    fresh.load_state_dict(opt.state_dict())
    for o in (opt, fresh):
        assert isinstance(o, SparseDenseOptimizer)
        for g in o.param_groups:  # as the loop sets the schedule's rate
            g["lr"] = 0.0
        assert [g["lr"] for part in o.parts for g in part.param_groups] == [0.0, 0.0]
        before = params(model)
        train_step(model, o)  # lr 0: neither part may move anything
        assert all(torch.equal(before[k], v) for k, v in params(model).items())


def test_zero_grad_clears_both_parts_and_state_is_the_merged_view() -> None:
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(lr=1e-2), model)
    train_step(model, opt)
    assert len(opt.state) == len(list(model.parameters()))  # what bench/plan_measure reads
    assert opt.state[model.embedding.weight]["exp_avg"].shape == model.embedding.weight.shape
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(NotImplementedError):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})


def test_state_dict_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(lr=1e-2, weight_decay=0.1), model)
    for _ in range(3):
        train_step(model, opt)
    save_checkpoint(tmp_path, model, opt, {"epoch": 0})
    with safe_open(str(tmp_path / CHECKPOINT), framework="pt") as f:
        groups = json.loads((f.metadata() or {})["optimizer"])["param_groups"]
    assert [g["params"] for g in groups] == [[0, 1, 2, 3], [4]]  # dense ids, then the table
    model2 = sparse_bag(seed=1)
    opt2 = build_optimizer(OptimConfig(lr=0.5), model2)
    load_checkpoint(tmp_path, model2, opt2)
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    as_json = json.loads(json.dumps(sd["param_groups"]))  # betas: a tuple saved as a list
    assert as_json == json.loads(json.dumps(sd2["param_groups"]))
    for i, state in sd["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sd2["state"][i][k])), (i, k)
    for _ in range(2):  # and both continue identically
        train_step(model, opt)
        train_step(model2, opt2)
    assert all(torch.equal(v, params(model2)[k]) for k, v in params(model).items())


def test_a_dense_checkpoint_into_the_pair_is_a_clear_error(tmp_path: Path) -> None:
    dense = BagClassifier(40, 3, embed_dim=8, hidden=6, bigram_buckets=11, sparse=False)
    opt = build_optimizer(OptimConfig(), dense)
    train_step(dense, opt)
    save_checkpoint(tmp_path, dense, opt, {})
    model = sparse_bag()
    with pytest.raises(ConfigError, match="parameter groups"):
        load_checkpoint(tmp_path, model, build_optimizer(OptimConfig(), model))


def test_tied_and_frozen_weights_are_not_sparse() -> None:
    model = sparse_bag()
    assert split_sparse_parameters(model)[1] == [model.embedding.weight]
    tied = nn.ModuleDict({"emb": nn.Embedding(10, 4, sparse=True), "out": nn.Linear(4, 10)})
    tied["out"].weight = tied["emb"].weight  # gets dense gradients from the output layer too
    dense, sparse = split_sparse_parameters(tied)
    assert sparse == [] and len(dense) == 2
    assert isinstance(build_optimizer(OptimConfig(), tied), torch.optim.Adam)
    model.embedding.weight.requires_grad_(False)
    assert split_sparse_parameters(model)[1] == []
    assert isinstance(build_optimizer(OptimConfig(), model), torch.optim.Adam)


def test_without_sparse_all_reduce_the_table_trains_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL cannot all-reduce sparse gradients: under it the model's tables are made dense."""
    monkeypatch.setattr(optim.tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(optim.tdist, "get_backend", lambda group=None: "nccl")
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(), model)
    assert isinstance(opt, torch.optim.Adam) and not model.embedding.sparse
    train_step(model, opt)  # a dense gradient, which Adam takes
    monkeypatch.setattr(optim.tdist, "get_backend", lambda group=None: "gloo")
    assert isinstance(build_optimizer(OptimConfig(), sparse_bag()), SparseDenseOptimizer)


# --------------------------------------------------------------------------- fused Adam


def test_fused_is_chosen_per_device_and_only_for_floating_point() -> None:
    cpu = [torch.zeros(2), torch.zeros(3, dtype=torch.float64)]
    assert adam_fused(cpu) is (True if "cpu" in optim.FUSED_DEVICES else None)
    assert "cuda" in optim.FUSED_DEVICES  # always on CUDA
    assert adam_fused([torch.zeros(2, dtype=torch.int64)]) is None
    assert adam_fused([torch.zeros(2, device="meta")]) is None  # no fused kernels there
    assert adam_fused([torch.zeros(2), torch.zeros(2, device="meta")]) is None  # mixed


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("model_name", ["bag", "cnn"])
def test_fused_matches_the_default_implementation(
    name: str, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(devices: tuple[str, ...]) -> dict[str, torch.Tensor]:
        monkeypatch.setattr(optim, "FUSED_DEVICES", devices)
        torch.manual_seed(0)
        model: nn.Module = (BagClassifier(50, 3, embed_dim=8, hidden=8) if model_name == "bag"
                            else TutorialCNN(1, 28, 28, 10))  # fmt: skip
        init = params(model)
        opt = build_optimizer(OptimConfig(optimizer=name, lr=1e-2, weight_decay=0.01), model)
        assert opt.param_groups[0]["fused"] is (True if devices else None)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            if model_name == "bag":
                ids = torch.randint(2, 50, (30,), generator=g)
                loss = F.cross_entropy(model(ids, torch.tensor([0, 10, 20, 30])), Y)
            else:
                x = torch.rand(4, 1, 28, 28, generator=g)
                loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        trained = params(model)
        assert all(not torch.equal(init[k], v) for k, v in trained.items())
        return trained

    fused, default = run(("cpu",)), run(())
    for k in default:  # rounding only: 1e-5 is 0.1% of one step's size (lr 1e-2)
        torch.testing.assert_close(fused[k], default[k], rtol=1e-5, atol=1e-5)


def test_loading_keeps_this_devices_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    monkeypatch.setattr(optim, "FUSED_DEVICES", ())
    saved = build_optimizer(OptimConfig(lr=1e-2), model)
    model(torch.randn(8, 4)).sum().backward()
    saved.step()
    monkeypatch.setattr(optim, "FUSED_DEVICES", ("cpu",))
    fused = build_optimizer(OptimConfig(lr=1e-2), model)
    fused.load_state_dict(saved.state_dict())  # written where fused was not chosen
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["foreach"] is None
    before = params(model)
    fused.step()  # the loaded state works with the fused kernel
    assert not torch.equal(before["weight"], model.weight)


@pytest.mark.parametrize("devices", [("cpu",), ()], ids=["fused", "default"])
def test_a_channels_last_weight_resumes_bit_identically(
    devices: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint saves moments contiguous; fused Adam pairs elements by memory position,
    so loading must give them the weight's channels-last layout back."""
    monkeypatch.setattr(optim, "FUSED_DEVICES", devices)

    def make() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return conv, build_optimizer(OptimConfig(lr=1e-1), conv)

    def steps(conv: nn.Module, opt: torch.optim.Optimizer, seeds: range) -> None:
        for s in seeds:
            x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(s))
            opt.zero_grad()
            conv(x.contiguous(memory_format=torch.channels_last)).pow(2).sum().backward()
            opt.step()

    whole, opt = make()
    steps(whole, opt, range(4))
    part, opt = make()
    steps(part, opt, range(2))
    save_checkpoint(tmp_path, part, opt, {})
    resumed, opt = make()
    load_checkpoint(tmp_path, resumed, opt)
    steps(resumed, opt, range(2, 4))
    for k, v in params(whole).items():
        assert torch.equal(v, params(resumed)[k]), k


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_is_torch_fused_adam_bit_for_bit(name: str) -> None:
    """engine.fused_adam calls the kernels torch.optim.Adam(fused=True) calls: identical
    weights and state after steps on a channels-last conv, a float64 and a grad-less tensor,
    and state dicts that load into each other and keep training identically."""
    from dlhpc.engine.fused_adam import FusedAdam, FusedAdamW

    def make() -> list[torch.Tensor]:
        torch.manual_seed(0)
        conv = torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
        return [t.requires_grad_() for t in (conv, torch.randn(5, dtype=torch.float64),
                                             torch.randn(4))]  # fmt: skip

    def run(opt: torch.optim.Optimizer, ps: list[torch.Tensor], seeds: range) -> None:
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            opt.zero_grad()
            loss = (ps[0] * torch.rand(ps[0].shape, generator=g)).sum() + ps[1].square().sum()
            loss.backward()  # type: ignore[no-untyped-call]  # ps[2] gets no gradient
            opt.step()

    stock_cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    ours_cls = FusedAdamW if name == "adamw" else FusedAdam
    mine, theirs = make(), make()
    ours = ours_cls(mine, lr=0.05, weight_decay=0.1)
    stock = stock_cls(theirs, lr=0.05, weight_decay=0.1, fused=True)
    assert isinstance(ours, stock_cls) and (name == "adam") != isinstance(ours, torch.optim.AdamW)
    run(ours, mine, range(3))
    run(stock, theirs, range(3))
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
    a, b = ours.state_dict(), stock.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys() == {0, 1}
    for i, st in b["state"].items():
        assert all(torch.equal(a["state"][i][k], v) for k, v in st.items())
    # cross-load: each continues from the other's state
    ours.load_state_dict(b)
    stock.load_state_dict(a)
    run(ours, mine, range(3, 6))
    run(stock, theirs, range(3, 6))
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
    assert ours.state[mine[0]]["exp_avg"].stride() == mine[0].stride()
    with pytest.raises(ValueError, match="parameter groups"):
        ours.load_state_dict({"state": {}, "param_groups": []})


def test_fused_adam_handles_what_torch_optim_accepts() -> None:
    import copy

    from dlhpc.engine.fused_adam import FusedAdam, FusedAdamW

    w = torch.randn(4, requires_grad=True)
    opt = FusedAdamW([w], lr=0.1)
    assert opt.param_groups[0]["weight_decay"] == 0.01  # torch.optim.AdamW's default
    # a gradient that is a view (DDP's bucket views) zeroes in place
    bucket = torch.zeros(8)
    w.grad = bucket[:4]
    w.grad.add_(1.0)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(bucket, torch.zeros(8)) and w.grad is not None
    # a plain Adam's state dict keeps this optimizer AdamW; a numeric step is upgraded
    adam = torch.optim.Adam([torch.randn(4, requires_grad=True)], lr=0.1)
    sd = adam.state_dict()
    sd["state"] = {0: {"step": 3, "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}}
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    assert opt.state[w]["step"].dtype == torch.float32 and float(opt.state[w]["step"]) == 3.0
    w.grad = torch.ones(4)
    opt.step()
    assert float(opt.state[w]["step"]) == 4.0
    # variants the fused step does not compute are refused, not silently ignored
    amsgrad = torch.optim.Adam([torch.randn(4, requires_grad=True)], amsgrad=True).state_dict()
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam([w]).load_state_dict(amsgrad)
    # a bare tensor is one parameter, not its rows; a parameter in two groups is refused
    v = torch.randn(3, 2, requires_grad=True)
    opt.add_param_group({"params": v})
    assert opt.param_groups[1]["params"] == [v]
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [w]})
    # copies do not wrap the class's step in torch.optim's hooks
    copy.deepcopy(opt).step()
    assert not getattr(FusedAdam.step, "hooked", False)


# --------------------------------------------------------------------------- end to end


def text_config(tmp_path: Path, **train: object) -> RunConfig:
    data = tmp_path / "topics"
    if not data.is_dir():
        data.mkdir()
        write_csv(data / "train.csv", corpus(900, 0))
        write_csv(data / "test.csv", corpus(300, 1))
    t = dataclasses.replace(TrainConfig(epochs=2, batch_size=64, quiet=True, log_every=5,
                                        threads=1), **train)  # fmt: skip
    return RunConfig(
        DataConfig(str(data), cache_dir=str(tmp_path / "cache"), vocab_size=200),
        ModelConfig("bag", bigrams=97),
        OptimConfig(lr=5e-2, warmup_epochs=0.5),
        t,
    )


@pytest.mark.slow
def test_sparse_bag_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    """Stop mid-epoch (step 20 of 2 × 15), resume, and end with bit-identical weights."""
    cfg = text_config(tmp_path)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sparse=True))
    whole = train_job(cfg, tmp_path / "whole")
    part = train_job(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=20)),
                     tmp_path / "part")  # fmt: skip
    assert part.summary is None and part.stopped_by == "max_steps"
    with safe_open(str(tmp_path / "part" / CHECKPOINT), framework="pt") as f:
        groups = json.loads((f.metadata() or {})["optimizer"])["param_groups"]
    assert len(groups) == 2 and "betas" in groups[1] and "fused" not in groups[1]  # SparseAdam
    resumed = train_job(None, tmp_path / "part", resume=True, train_overrides={"max_steps": None})
    assert resumed.summary is not None and whole.summary is not None
    assert_same_weights(tmp_path / "whole", tmp_path / "part")
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"] > 0.85


def _ddp_bag(dist: Dist, world: int) -> dict[str, torch.Tensor]:
    """Five steps of a sparse bag on this rank's half of a 16-text batch (the loop's loss)."""
    model = sparse_bag()
    opt = build_optimizer(OptimConfig(lr=1e-2), model)
    net = dist.wrap(model)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, 8, (16,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(2, 40, (int(offsets[-1]),), generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    part = dist.part(16)
    lo, hi = part.start, part.stop
    for _ in range(5):
        logits = net(ids[offsets[lo] : offsets[hi]], offsets[lo : hi + 1] - offsets[lo])
        loss = F.cross_entropy(logits, y[lo:hi], reduction="sum") * (world / 16)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        assert model.embedding.weight.grad is not None and model.embedding.weight.grad.is_sparse
        opt.step()
    return params(model)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    env = ClusterEnv(rank=rank, world_size=world, master_port=port, local_world_size=world)
    dist = init_distributed(env, torch.device("cpu"), 60)
    try:
        got = _ddp_bag(dist, world)
        if rank == 0:
            torch.save(got, out)
    finally:
        dist.close()


@pytest.mark.slow
def test_two_gloo_ranks_with_sparse_gradients_match_one_rank(tmp_path: Path) -> None:
    out = tmp_path / "two.pt"
    mp.spawn(_ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    two = torch.load(out)
    one = _ddp_bag(Dist(ClusterEnv(), torch.device("cpu")), 1)
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6)


def test_the_sparse_flag_reaches_the_model_and_the_saved_run(tmp_path: Path) -> None:
    from dlhpc.cli import main
    from dlhpc.engine.rundir import load_run

    text_config(tmp_path)  # writes the corpus
    run = tmp_path / "run"
    argv = ["train", "bag", "--data", str(tmp_path / "topics"), "--sparse", "--epochs", "1",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    loaded = load_run(run)
    assert loaded.config.model.sparse and loaded.spec.config.sparse
    bags = [m for m in loaded.model.modules() if isinstance(m, nn.EmbeddingBag)]
    assert bags and all(m.sparse for m in bags)
    opt = optim.build_optimizer(OptimConfig(), loaded.model)
    assert isinstance(opt, optim.SparseDenseOptimizer)


def test_a_training_process_never_loads_torch_dynamo(tmp_path: Path) -> None:
    """torch.optim's optimizers and FlopCounterMode import torch._dynamo on first use (≈ 2 s
    per process); dlhpc's default training path must not — it never compiles."""
    import subprocess
    import sys

    data = tmp_path / "topics"
    data.mkdir()
    write_csv(data / "train.csv", corpus(300, 0))
    write_csv(data / "test.csv", corpus(100, 1))
    script = (
        "import sys; from dlhpc.cli import main; "
        f"rc = main(['train', 'bag', '--data', {str(data)!r}, '--out', {str(tmp_path / 'run')!r}, "
        "'--epochs', '1', '--threads', '1', '--quiet']); "
        "print(rc, 'torch._dynamo' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()  # fmt: skip
    assert out[-3:] == ["0", "False", "True"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["flops_per_sample"] > 0  # counted, and the fused optimizer stepped
    for png in ("curves.png", "confusion.png"):  # drawn by the figure helper (engine.plots)
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"
