"""Training engine: one loop (:class:`Trainer`) for every model, atomic checkpoints with exact
resumption, optimisers and the warm-up/multi-step schedule, JSON-lines logs; the training tasks
(:mod:`~reidlib.engine.training`, :mod:`~reidlib.engine.foreground`), evaluation
(:mod:`~reidlib.engine.evaluation`) and the files a run leaves (:mod:`~reidlib.engine.artifacts`)."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "Trainer": "trainer",
    "criterion_step": "steps",
    "resolve_amp": "precision",
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
    "RunResult": "training",
    "train_reid": "training",
    "train_span": "training",
    "run_training": "training",
    "train_foreground": "training",
    "predict_foreground": "foreground",
    "resolve_foreground": "foreground",
    "evaluate_reid": "evaluation",
    "extract_features": "evaluation",
    "load_model": "artifacts",
    "load_span": "artifacts",
    "rebuild": "artifacts",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
