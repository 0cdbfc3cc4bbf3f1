"""The old home of the evaluation engine, kept so that `repro.evaluate` imports keep working.

The engine lives in `repro.engine` (see its package docstring); this module only re-exports
its public names."""

from repro.engine import (  # noqa: F401
    PREFETCH_DEPTH, PROGRESS_DIR, SUBMISSION_DIR, EngineOptions, EvalJob, LogCallback, PhaseCallback,
    ProgressCallback, Ranks, Terminated, build_job, dataset_count, evaluate, progress_path, resolve_device, run_job,
    setup_distributed,
)
