"""Device resolution and deterministic seeding. Nothing in reidlib hard-codes a CUDA device:
everything goes through ``resolve_device`` and ``tensor.to(device)``."""
from __future__ import annotations

import os
import random
import re


def resolve_device(device: str = "auto"):
    """``"auto"`` -> cuda if available, else cpu; anything else is passed to ``torch.device``."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: the device strings reidlib accepts (``train.device``, ``--device``, a notebook's ``device``)
DEVICE_FORMS = "auto, cpu, cuda[:N] or mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(?::(\d+))?)$")


def check_device(device) -> str:
    """``device`` (``None`` is ``"auto"``) as a string, if this machine has it; else
    :class:`reidlib.errors.ConfigError` in one line naming what was asked, what exists here and
    the accepted forms, e.g. ``device='cuda': no CUDA device is available (torch 2.5.1+cpu is built
    without CUDA); available here: cpu; expected auto, cpu, cuda[:N] or mps``. Imports torch only
    for ``cuda`` and ``mps``."""
    from reidlib.errors import ConfigError

    if device is None:
        return "auto"
    match = _DEVICE_RE.match(device) if isinstance(device, str) else None
    if match is None:
        raise ConfigError(f"device={device!r} is not a device name; expected {DEVICE_FORMS}")
    name = match.group(1)
    if name in ("auto", "cpu"):
        return name
    import torch

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"device={device!r}: {problem}; available here: {', '.join(available_devices())}; "
                           f"expected {DEVICE_FORMS}")

    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise fail(f"MPS (Apple GPU) is not available (torch {torch.__version__})")
        return name
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        built = (f"built for CUDA {torch.version.cuda} but finds no GPU" if torch.version.cuda
                 else "built without CUDA")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise fail(f"no CUDA device is available (torch {torch.__version__} is {built}{seen})")
    index = match.group(2)
    if index is not None and int(index) >= n:
        raise fail(f"only {n} CUDA device(s) visible (cuda:0 to cuda:{n - 1})")
    return name


def available_devices() -> list[str]:
    """The devices of this machine, as :func:`check_device` accepts them: ``cpu``, ``cuda:N``, ``mps``."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def device_name(device) -> str:
    """Human-readable device name for provenance (GPU model or CPU description)."""
    import platform

    import torch

    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); optionally ask torch for deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX-BF16 in ``/proc/cpuinfo``)
    and torch's oneDNN uses it; only then is bf16 autocast on the CPU faster than float32."""
    import torch

    if not ({"avx512_bf16", "amx_bf16"} & cpu_flags()):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
