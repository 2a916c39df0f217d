"""Where this process runs: rank, world size, device and threads.

The only module that reads the environment, and only what launchers set. Single-process runs
use ``SingleProcess``; launchers (torchrun, Slurm) plug in as other ``ClusterEnv`` values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dlhpc.errors import ConfigError


@dataclass(frozen=True)
class ClusterEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect_env(environ: Mapping[str, str] | None = None) -> ClusterEnv:
    """The cluster environment from launcher variables (torchrun sets RANK, WORLD_SIZE, …)."""
    e = os.environ if environ is None else environ
    if "RANK" in e and "WORLD_SIZE" in e:
        try:
            return ClusterEnv(
                rank=int(e["RANK"]),
                world_size=int(e["WORLD_SIZE"]),
                local_rank=int(e.get("LOCAL_RANK", "0")),
                local_world_size=int(e.get("LOCAL_WORLD_SIZE", "1")),
                launcher="torchrun",
            )
        except ValueError as err:
            raise ConfigError(f"malformed launcher variable: {err}") from None
    return ClusterEnv()


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which Slurm and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(env: ClusterEnv, requested: int | None) -> int:
    """Intra-op threads per rank: the cores we may use, shared among the ranks of this node."""
    cores = available_cores()
    per_rank = max(1, cores // max(1, env.local_world_size))
    if requested is None:
        return per_rank
    if requested * env.local_world_size > cores:
        raise ConfigError(
            f"--threads {requested} × {env.local_world_size} rank(s) per node exceeds the "
            f"{cores} core(s) available; use --threads {per_rank} or fewer"
        )
    return requested


def resolve_device(requested: str, env: ClusterEnv) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    if requested == "cuda":
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device("cpu")
