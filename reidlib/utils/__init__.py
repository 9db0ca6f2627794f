"""Small shared utilities: atomic file output, device resolution, seeding."""
from reidlib.utils.io import atomic_write_bytes, atomic_write_text, atomic_write_json, atomic_path
from reidlib.utils.device import resolve_device, seed_everything

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_path",
           "resolve_device", "seed_everything"]
