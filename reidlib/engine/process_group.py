"""The process group of a ``torchrun`` launch: who this process is (:func:`rank`,
:func:`world_size`, :func:`rank_device`), and creating / destroying the group
(:func:`init_from_env`, :func:`shutdown`). The collectives built on it are in
:mod:`reidlib.engine.distributed`, which re-exports everything here."""
from __future__ import annotations

import datetime
import os
from typing import Any, Optional

import torch
import torch.distributed as dist

from reidlib.errors import ConfigError

__all__ = ["env_world", "init_from_env", "shutdown", "is_distributed", "rank", "world_size", "is_main",
           "rank_device", "comm_device"]


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from a ``torchrun`` environment; ``(0, 1, 0)`` outside one."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ConfigError(f"malformed torchrun environment (RANK / WORLD_SIZE / LOCAL_RANK): {err}") from None


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return rank() == 0


def _local_rank() -> int:
    return env_world()[2]


def rank_device(device: Any) -> torch.device:
    """This rank's device: ``cuda`` (or ``cuda:N``) becomes ``cuda:LOCAL_RANK`` under a multi-rank
    launch (one GPU per rank); other devices are returned as they are."""
    from reidlib.utils.device import resolve_device

    device = device if isinstance(device, torch.device) else resolve_device(device)
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", _local_rank())
    return device


def init_from_env(device: Any = "auto", timeout_s: Optional[float] = None) -> bool:
    """Initialise the process group of a ``torchrun`` launch with more than one rank; returns
    whether it did (False outside torchrun, for ``WORLD_SIZE=1``, or when a group already exists).

    Backend: ``nccl`` when ``device`` resolves to CUDA (the rank's GPU is ``cuda:LOCAL_RANK``, set
    as the current device), else ``gloo``. ``timeout_s``: how long a collective may wait for the
    other ranks (torch's default when None)."""
    from reidlib.utils.device import resolve_device

    _, world, local = env_world()
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    backend = "gloo"
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise ConfigError(f"LOCAL_RANK {local} but only {n} GPU(s) visible: start at most {n} processes per "
                              "machine (torchrun --nproc-per-node), or check CUDA_VISIBLE_DEVICES")
        torch.cuda.set_device(local)
        backend = "nccl"
    kw = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=float(timeout_s))}
    if backend == "nccl":
        kw["device_id"] = torch.device("cuda", local)
    dist.init_process_group(backend=backend, **kw)
    global _INITIALISED_HERE
    _INITIALISED_HERE = True
    return True


#: module state, as torch's process group is: whether :func:`init_from_env` created the group of
#: this process (so that ``shutdown(only_own=True)`` leaves a caller's own group alone)
_INITIALISED_HERE = False


def shutdown(only_own: bool = False) -> None:
    """Destroy the process group if one is initialised (``only_own``: only one that
    :func:`init_from_env` created)."""
    global _INITIALISED_HERE
    if dist.is_available() and dist.is_initialized() and (_INITIALISED_HERE or not only_own):
        dist.destroy_process_group()
        _INITIALISED_HERE = False


def comm_device() -> torch.device:
    """Where tensors of a collective must live: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
