"""Where this process runs: rank, world size, node, master address, device and threads.

The only module that reads the environment, and only what launchers set: torchrun (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``,
``TORCHELASTIC_RESTART_COUNT``) and Slurm's ``srun`` (``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID``, ``SLURM_STEP_TASKS_PER_NODE``, ``SLURM_JOB_NODELIST``, ``SLURM_NNODES``,
``SLURM_CPUS_PER_TASK``, ``SLURM_JOB_ID``). Without a launcher: one process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dlhpc.errors import ConfigError

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class ClusterEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    launcher: str = "single"  # single | torchrun | slurm
    cpus_per_task: int | None = None  # Slurm's --cpus-per-task: the threads a rank may use
    restart_count: int = 0  # torchrun --max-restarts: how often the workers were restarted
    agent_store: bool = False  # torchrun's agent hosts the rendezvous store (TCPStore server)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: ``node[07-09,11],gpu1`` → ``node07``."""
    m = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ConfigError(f"cannot parse SLURM_JOB_NODELIST {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix if not ranges else prefix + ranges.split(",")[0].split("-")[0]


def _tasks_on_first_node(spec: str) -> int:
    """``SLURM_STEP_TASKS_PER_NODE`` such as ``2(x3),1`` → 2."""
    m = re.match(r"(\d+)", spec)
    return int(m.group(1)) if m else 1


def _int(e: Mapping[str, str], key: str, default: int | None = None) -> int:
    value = e.get(key)
    if value is None:
        if default is None:
            raise ConfigError(f"launcher variable {key} is missing")
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"launcher variable {key}={value!r} is not an integer") from None


def detect_env(environ: Mapping[str, str] | None = None) -> ClusterEnv:
    """The cluster environment from launcher variables; torchrun wins over Slurm."""
    e = os.environ if environ is None else environ
    if "RANK" in e and "WORLD_SIZE" in e:
        world, local_world = _int(e, "WORLD_SIZE"), _int(e, "LOCAL_WORLD_SIZE", 1)
        return ClusterEnv(
            rank=_int(e, "RANK"),
            world_size=world,
            local_rank=_int(e, "LOCAL_RANK", 0),
            local_world_size=local_world,
            nodes=max(1, world // max(1, local_world)),
            master_addr=e.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_int(e, "MASTER_PORT", DEFAULT_PORT),
            launcher="torchrun",
            restart_count=_int(e, "TORCHELASTIC_RESTART_COUNT", 0),
            agent_store=e.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true",
        )
    if "SLURM_PROCID" in e and "SLURM_STEP_ID" in e and _int(e, "SLURM_NTASKS", 1) > 1:
        cpus = e.get("SLURM_CPUS_PER_TASK")
        return ClusterEnv(
            rank=_int(e, "SLURM_PROCID"),
            world_size=_int(e, "SLURM_NTASKS"),
            local_rank=_int(e, "SLURM_LOCALID", 0),
            local_world_size=_tasks_on_first_node(e.get("SLURM_STEP_TASKS_PER_NODE", "1")),
            nodes=_int(e, "SLURM_NNODES", 1),
            master_addr=first_host(e.get("SLURM_JOB_NODELIST", "127.0.0.1")),
            master_port=_int(e, "MASTER_PORT", 20000 + _int(e, "SLURM_JOB_ID", 0) % 20000),
            launcher="slurm",
            cpus_per_task=int(cpus) if cpus and cpus.isdigit() else None,
        )
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
    if env.cpus_per_task:  # Slurm gave each task its own CPUs (and a narrowed mask)
        cores = env.cpus_per_task * env.local_world_size
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
        gpus = torch.cuda.device_count()
        if env.local_world_size > gpus:  # NCCL refuses two ranks on one GPU, later and worse
            raise ConfigError(
                f"{env.local_world_size} ranks per node need as many GPUs; this node has "
                f"{gpus}: use --nproc {gpus} (or --device cpu)"
            )
        return torch.device("cuda", env.local_rank)
    if requested == "cuda":
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device("cpu")
