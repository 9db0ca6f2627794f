"""Datasets: real-data loaders (VeRi-776, VehicleID, VERI-Wild), SynthVeRi, torch Dataset, P x K sampler."""
from reidlib._lazy import lazy_exports

_EXPORTS = {
    "Record": "records",
    "VeRi776": "veri776",
    "VehicleID": "vehicleid",
    "vehicleid_all_trials": "vehicleid",
    "VERIWild": "veriwild",
    "ImageDataset": "dataset",
    "build_transforms": "dataset",
    "PKSampler": "sampler",
    "relabel": "dataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
