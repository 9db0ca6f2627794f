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


def provenance(profile: str, parameters: Mapping[str, Any], device: str = "auto") -> dict[str, Any]:
    """What produced a result: code (commit, dirty flag, versions), machine, profile, seeds, parameters."""
    import torch
    import torchvision

    import reidlib
    from reidlib.engine.trainer import precision_name, resolve_amp
    from reidlib.utils.device import device_name, resolve_device

    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    seeds = parameters.get("seeds")
    if seeds is None:
        seeds = [parameters.get("seed")]
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
        "seeds": seeds,
        "parameters": jsonable(dict(parameters)),
    }

