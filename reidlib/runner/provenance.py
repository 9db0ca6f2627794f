"""What produced a result: the code (commit, dirty flag), the library versions, the machine (its CPU
model and the CPU features that pick torch's bf16 kernels), the kernel backends in use, the
profile, the seeds and the parameters of the run. What of it must match for a number to be
reproduced bit for bit is said in ``book/verdicts.md`` ("Reproducibility")."""
from __future__ import annotations

import platform
import re
import subprocess
from importlib import metadata
from typing import Any, Mapping, Optional

from reidlib.utils import paths
from reidlib.utils.io import jsonable


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=paths.home(), capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


#: the CPU features that decide which bf16 kernels torch's oneDNN runs under CPU autocast
BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")


def cpu_model() -> str:
    """The processor's name: ``model name`` in ``/proc/cpuinfo``, else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            found = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1).strip() if found else (platform.processor() or platform.machine())


def machine_record() -> dict[str, Any]:
    """The CPU and the numerics libraries, as far as they change the numbers: the CPU model, its
    bf16-relevant flags (present or not), torch's CPU kernel level (``get_cpu_capability``) and
    whether its oneDNN computes bf16 natively, numpy / numba / pandas versions and the CPDM and
    ranking backends (``REIDLIB_CPDM_BACKEND`` / ``REIDLIB_RANK_BACKEND``, else the default)."""
    import torch

    from reidlib.metrics import cpdm, rank
    from reidlib.utils.device import cpu_bf16_supported, cpu_flags

    flags = cpu_flags()
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)

    def version(dist: str) -> Optional[str]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    def backend(resolve) -> str:
        try:
            return resolve()
        except (ImportError, ValueError) as exc:      # a bad environment variable: say so, do not fail
            return f"unresolved ({exc})"

    return {
        "cpu": cpu_model(),
        "cpu_flags": {name: name in flags for name in BF16_FLAGS},
        "cpu_capability": capability() if capability else None,
        "cpu_bf16_native": cpu_bf16_supported(),
        "numpy": version("numpy"), "numba": version("numba"), "pandas": version("pandas"),
        "backends": {"cpdm": backend(cpdm.resolve_backend), "rank": backend(rank.resolve_backend)},
    }


def seeds_used(profile: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every seed of a run by its meaning, as :class:`reidlib.study.Study` uses them: the notebook's
    ``seed`` is the data seed (the SynthVeRi world); the training seeds are ``seeds`` when the
    notebook declares it, else the profile's (SPAN step 1 is trained once per training seed); the
    evaluation-sample and VehicleID trial seeds are ``eval_seed`` / ``trial_seed`` (default 0)."""
    from reidlib.study.profiles import PROFILES

    training = parameters.get("seeds")
    if training is None:
        training = list(PROFILES[profile].seeds) if profile in PROFILES else [parameters.get("seed")]
    return {"data_seed": parameters.get("seed"), "training_seeds": [int(s) for s in training if s is not None],
            "span_step1_seeds": [int(s) for s in training if s is not None],
            "eval_seed": parameters.get("eval_seed", 0),
            "trial_seed": parameters.get("trial_seed", 0) if parameters.get("dataset") == "vehicleid" else None}


def _profile_settings(profile: str) -> Optional[dict]:
    from reidlib.study.profiles import PROFILES

    return jsonable(PROFILES[profile].to_dict()) if profile in PROFILES else None


def provenance(profile: str, parameters: Mapping[str, Any], device: str = "auto") -> dict[str, Any]:
    """What produced a result: code (commit, dirty flag, versions), machine (:func:`machine_record`),
    profile, seeds, parameters."""
    import torch
    import torchvision

    import reidlib
    from reidlib.engine.precision import precision_name, resolve_amp
    from reidlib.utils.device import device_name, resolve_device

    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    # the library's own files that the commit does not hold (a new module a notebook imports ran,
    # but no commit has it): they make a run dirty too
    new_code = _git("status", "--porcelain", "--untracked-files=all", "--", "reidlib")
    new_code = "\n".join(line for line in (new_code or "").splitlines() if line.startswith("??"))
    if new_code:
        status = "\n".join(x for x in (status, new_code) if x)
    by_meaning = seeds_used(profile, parameters)
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        # which tracked files differed from the commit, and which of the library's files it lacks
        # (``git status --porcelain`` paths)
        "dirty_paths": [re.sub(r"^\s*\S{1,2}\s+", "", line).split(" -> ")[-1] for line in status.splitlines()]
        if status else [],
        "reidlib": reidlib.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(device),
        # what training and feature extraction use by default on this device (train.amp=auto)
        "precision": precision_name(resolve_amp("auto", resolve_device(device)), channels_last=False),
        "torch_threads": torch.get_num_threads(),
        **machine_record(),
        "profile": profile,
        # the profile's settings as this run read them (its budget: iterations, sizes, backbones), so
        # a page states what it ran even after the profile changes
        "profile_settings": _profile_settings(profile),
        "seeds": by_meaning["training_seeds"],     # the training seeds (one model per seed and row)
        "seeds_by_meaning": by_meaning,
        "parameters": jsonable(dict(parameters)),
    }

