"""Training engine: one loop (:class:`Trainer`) for every model, atomic checkpoints with exact
resumption, optimisers and the warm-up/multi-step schedule, JSON-lines logs, and the high-level
tasks (``train_reid``, ``evaluate_reid``, ``train_span``, ``train_foreground``) that the notebooks
and the CLI call."""
from reidlib._lazy import lazy_exports

_EXPORTS = {
    "Trainer": "trainer",
    "build_loader": "trainer",
    "criterion_step": "trainer",
    "resolve_amp": "trainer",
    "RandomBatchSampler": "trainer",
    "SeededBatchSampler": "trainer",
    "SeededDataset": "trainer",
    "build_optimizer": "optim",
    "WarmupMultiStepLR": "optim",
    "epochs_to_iters": "optim",
    "CheckpointManager": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "capture_rng_state": "checkpoint",
    "restore_rng_state": "checkpoint",
    "JSONLLogger": "logging",
    "read_jsonl": "logging",
    "read_log": "logging",
    "RunResult": "tasks",
    "train_reid": "tasks",
    "evaluate_reid": "tasks",
    "extract_features": "tasks",
    "train_span": "tasks",
    "train_foreground": "tasks",
    "load_model": "tasks",
    "load_span": "tasks",
    "load_dataset": "tasks",
    "run_training": "tasks",
    "predict_foreground": "tasks",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
