"""SynthVeRi: a procedural vehicle re-ID benchmark in VeRi-776's, VehicleID's or VERI-Wild's layout.

Each identity is a small textured 3D vehicle (:mod:`.geometry`, :mod:`.identities`) rendered
with OpenCV by a pinhole camera at any yaw (:mod:`.render`) by one of several cameras with their
own elevation range, light, colour cast, background, blur and noise (:mod:`.cameras`). The same
images are written in one of three layouts (:mod:`.layouts`): VeRi-776's (images, name lists,
gt/junk indices, 42-field key-point files), VehicleID's (no cameras; test lists 800/1600/2400)
or VERI-Wild's (``vehicle_info.txt`` cameras, query/gallery lists). In every layout each image
has a ground-truth part mask and its yaw / 8-way orientation / SPAN 5-way view (:mod:`.writer`).

Public API::

    generate(out_dir, preset="small", image_size=128, seed=0, workers=None, overwrite=False,
             layout="veri776", *, progress=True, lock_timeout=None) -> Path
    python -m reidlib.data.synth OUT --preset small --seed 0 [--image-size N] [--layout L] [--workers N]
                                     [--overwrite] [--lock-timeout S]
    mask_path(image_path) -> Path           the ground-truth part mask of an image, any layout

plus :func:`sample_grid` (figures, any layout). The training-free baselines (``difficulty_table``) moved
to :mod:`reidlib.ablations.benchmark`.
"""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "generate": "writer",
    "verify": "writer",
    "load_manifest": "writer",
    "SynthFolderError": "writer",
    "SynthWorkerError": "writer",
    "LAYOUTS": "config",
    "mask_path": "layouts",
    "PRESETS": "config",
    "GENERATOR_VERSION": "config",
    "build_plan": "plan",
    "build_vehicle": "geometry",
    "BODY_TYPES": "geometry",
    "KEYPOINT_NAMES": "geometry",
    "make_identities": "identities",
    "make_textures": "identities",
    "sample_grid": "figures",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
