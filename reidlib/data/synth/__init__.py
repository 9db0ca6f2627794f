"""SynthVeRi: a procedural vehicle re-ID benchmark written in VeRi-776's exact layout.

Each identity is a small textured 3D vehicle (:mod:`.geometry`, :mod:`.identities`) rendered
with OpenCV by a pinhole camera at any yaw (:mod:`.render`) by one of several cameras with their
own elevation range, light, colour cast, background, blur and noise (:mod:`.cameras`). Besides
the VeRi-776 files (images, name lists, gt/junk indices, 42-field key-point files), every image
has a ground-truth part mask and its yaw / 8-way orientation / SPAN 5-way view (:mod:`.writer`).

Public API::

    generate(out_dir, preset="small", image_size=128, seed=0, workers=None, overwrite=False) -> Path
    python -m reidlib.data.synth OUT --preset small --seed 0 [--image-size N] [--workers N] [--overwrite]

plus :func:`difficulty_table` (baselines per viewpoint relation) and :func:`sample_grid` (figures).
"""
from reidlib._lazy import lazy_exports

_EXPORTS = {
    "generate": "writer",
    "verify": "writer",
    "load_manifest": "writer",
    "SynthFolderError": "writer",
    "PRESETS": "config",
    "GENERATOR_VERSION": "config",
    "build_plan": "plan",
    "build_vehicle": "geometry",
    "BODY_TYPES": "geometry",
    "KEYPOINT_NAMES": "geometry",
    "make_identities": "identities",
    "make_textures": "identities",
    "difficulty_table": "difficulty",
    "sample_grid": "figures",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
