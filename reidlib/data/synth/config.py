"""SynthVeRi presets and the configuration that identifies one generated data set.

Two runs with the same :func:`run_config` (generator version, preset parameters, image size,
seed, layout) write byte-identical folders; the worker count is not part of it. The layout
(:data:`LAYOUTS`) only changes file names and list files: the rendered images are the same.
"""
from __future__ import annotations

from typing import Any

from reidlib.errors import ConfigError

#: Bump whenever the rendered bytes change for a fixed config (it is part of the manifest).
GENERATOR_VERSION = "1.0.0"

#: On-disk layouts: VeRi-776's (Liu et al., ICME 2016), VehicleID's (Liu et al., CVPR 2016) and
#: VERI-Wild's (Lou et al., CVPR 2019); see :mod:`reidlib.data.synth.layouts`.
LAYOUTS = ("veri776", "vehicleid", "veriwild")

#: Preset parameters. Expected images = (train + test ids) x mean(cams_per_id) x mean(frames_per_track).
#:
#: * ``n_train_ids`` / ``n_test_ids``: identities of ``image_train`` and ``image_test`` (disjoint, as in VeRi).
#: * ``n_cameras``: cameras ``c001..cNNN``; each identity passes ``cams_per_id`` (inclusive range)
#:   distinct cameras and each pass is a track of ``frames_per_track`` frames (yaw drifts along it).
#: * ``family_size``: identities per family (same body type, colour and model details; siblings
#:   differ only in view-specific details: the inter-class similarity of the benchmark).
#: * ``occlusion_prob``: probability that an image gets a partial occluder.
PRESETS: dict[str, dict[str, Any]] = {
    "veri": dict(n_train_ids=576, n_test_ids=200, n_cameras=20, cams_per_id=(4, 12),
                 frames_per_track=(4, 12), family_size=(1, 4), occlusion_prob=0.08),
    "small": dict(n_train_ids=150, n_test_ids=100, n_cameras=20, cams_per_id=(3, 8),
                  frames_per_track=(3, 7), family_size=(1, 4), occlusion_prob=0.08),
    "tiny": dict(n_train_ids=16, n_test_ids=10, n_cameras=6, cams_per_id=(2, 4),
                 frames_per_track=(2, 4), family_size=(1, 3), occlusion_prob=0.1),
    # VehicleID-sized test side (Liu et al., CVPR 2016: ~8 images per identity; the ``vehicleid``
    # layout's test_list_800 / 1600 / 2400 then hold VehicleID's 800 / 1600 / 2400 ids), with a
    # training side the size of ``small``'s (450 ids x ~9 images, ~4,000 images). The profiles'
    # ``vehicleid_preset`` (reidlib.study.profiles).
    "small_vehicleid": dict(n_train_ids=450, n_test_ids=2400, n_cameras=20, cams_per_id=(2, 4),
                            frames_per_track=(2, 4), family_size=(1, 4), occlusion_prob=0.08),
}


def preset_params(preset: str) -> dict[str, Any]:
    """A copy of the parameters of ``preset`` (ConfigError for an unknown name)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown SynthVeRi preset {preset!r}; expected one of {sorted(PRESETS)}")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in PRESETS[preset].items()}


def run_config(preset: str, image_size: int, seed: int, layout: str = "veri776") -> dict[str, Any]:
    """The JSON-able configuration stored in ``manifest.json`` and compared on re-runs.

    Folders written before layouts existed have no ``layout`` key: :func:`same_config` reads
    them as ``"veri776"`` (the only layout there was), so they stay valid."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown SynthVeRi layout {layout!r}; expected one of {list(LAYOUTS)}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or not 32 <= image_size <= 1024:
        raise ConfigError(f"image_size must be an int in 32..1024, got {image_size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    params = preset_params(preset)
    if params["n_cameras"] > 999 or params["n_train_ids"] + params["n_test_ids"] > 9999:
        raise ConfigError("VeRi names allow at most 999 cameras and 9999 identities")
    return {"generator": "SynthVeRi", "generator_version": GENERATOR_VERSION, "preset": preset,
            "params": params, "image_size": image_size, "seed": seed, "layout": layout}


def config_layout(cfg: Any) -> str:
    """The layout of a stored configuration (``"veri776"`` when it predates layouts)."""
    return cfg.get("layout", "veri776") if isinstance(cfg, dict) else "veri776"


def same_config(old: Any, new: dict[str, Any]) -> bool:
    """Whether stored configuration ``old`` describes the same data set as ``new``."""
    if not isinstance(old, dict):
        return False
    return {**old, "layout": config_layout(old)} == {**new, "layout": config_layout(new)}
