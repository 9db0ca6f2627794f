"""Datasets: real-data loaders (VeRi-776, VehicleID, VERI-Wild), SynthVeRi, torch Dataset, P x K sampler."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "Record": "records",
    "VeRi776": "veri776",
    "VehicleID": "vehicleid",
    "VERIWild": "veriwild",
    "ImageDataset": "dataset",
    "build_transforms": "dataset",
    "PKSampler": "sampler",
    "relabel": "dataset",
    "load_dataset": "registry",
    "DATASETS": "registry",
    "build_loader": "loaders",
    "RandomBatchSampler": "sampler",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
