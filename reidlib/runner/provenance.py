"""What produced a result: the code (commit, dirty flag), the library versions, the machine, the
profile, the seeds and the parameters of the run."""
from __future__ import annotations

import platform
import subprocess
from typing import Any, Mapping, Optional

from reidlib.utils import paths
from reidlib.utils.io import jsonable


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=paths.home(), capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


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


def provenance(profile: str, parameters: Mapping[str, Any], device: str = "auto") -> dict[str, Any]:
    """What produced a result: code (commit, dirty flag, versions), machine, profile, seeds, parameters."""
    import torch
    import torchvision

    import reidlib
    from reidlib.engine.precision import precision_name, resolve_amp
    from reidlib.utils.device import device_name, resolve_device

    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    by_meaning = seeds_used(profile, parameters)
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "reidlib": reidlib.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(device),
        # what training and feature extraction use by default on this device (train.amp=auto)
        "precision": precision_name(resolve_amp("auto", resolve_device(device)), channels_last=False),
        "torch_threads": torch.get_num_threads(),
        "profile": profile,
        "seeds": by_meaning["training_seeds"],     # the training seeds (one model per seed and row)
        "seeds_by_meaning": by_meaning,
        "parameters": jsonable(dict(parameters)),
    }

