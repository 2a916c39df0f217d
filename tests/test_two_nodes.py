"""Two nodes on one machine: two network namespaces joined by a veth pair, one torchrun node in
each, rendezvousing over TCP between them. Needs root and ``ip netns`` (skipped otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

NET = "10.213.{}.{}"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str, str]]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2's `ip netns` to make two hosts")
    tag = f"{os.getpid() % 10_000}"
    ns = (f"dlhpc-a{tag}", f"dlhpc-b{tag}")
    subnet = os.getpid() % 250
    addrs = (NET.format(subnet, 1), NET.format(subnet, 2))
    made: list[str] = []
    try:
        for n in ns:
            r = _ip("netns", "add", n)
            if r.returncode:
                pytest.skip(f"ip netns unavailable: {r.stderr.strip()}")
            made.append(n)
        veth = (f"va{tag}", f"vb{tag}")
        assert _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1]).returncode == 0
        for n, v, a in zip(ns, veth, addrs, strict=True):
            steps = (
                ["link", "set", v, "netns", n],
                ["-n", n, "addr", "add", f"{a}/24", "dev", v],
                ["-n", n, "link", "set", v, "up"],
                ["-n", n, "link", "set", "lo", "up"],
            )
            for cmd in steps:
                r = _ip(*cmd)
                assert r.returncode == 0, r.stderr
        yield ns[0], ns[1], addrs[0]
    finally:
        for n in made:
            _ip("netns", "del", n)


@pytest.mark.slow
def test_two_torchrun_nodes_train_together(two_hosts: tuple[str, str, str], tmp_path: Path) -> None:
    ns_a, ns_b, host = two_hosts
    run = tmp_path / "run"
    train = ["-m", "dlhpc", "train", "mlp", "--data", "digits", "--hidden", "16",
             "--epochs", "1", "--batch-size", "64", "--threads", "1", "--out", str(run),
             "--quiet", "--json"]  # fmt: skip
    procs = []
    for node_rank, ns in enumerate((ns_a, ns_b)):
        veth = "va" if node_rank == 0 else "vb"
        ifname = next(line.split(":")[1].strip().split("@")[0]
                      for line in _ip("-n", ns, "-o", "link").stdout.splitlines()
                      if f" {veth}" in line)  # fmt: skip
        env = {**os.environ, "GLOO_SOCKET_IFNAME": ifname, "OMP_NUM_THREADS": "1"}
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run",
               "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node_rank),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{host}:29411",
               "--rdzv-id", "dlhpc-two-nodes",
               # the store lives on node 0; say so (its hostname is the machine's, not the IP)
               "--rdzv-conf", f"is_host={int(node_rank == 0)}",
               "--local-addr", host if node_rank == 0 else host.rsplit(".", 1)[0] + ".2",
               *train]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert json.loads(outs[0][0].strip().splitlines()[-1])["world_size"] == 2
