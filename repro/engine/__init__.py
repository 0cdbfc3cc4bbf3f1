"""The evaluation engine: one model x one dataset split x one test protocol -> one result file
and its evidence sidecar.

Modules, each one step (imports point down this list):
- `options`: `EngineOptions`, the one typed options object, and `parse_device` (no torch: the CLI
  builds and checks them);
- `devices`: devices and ranks, the process group, `Collective` (gather, barrier);
- `signals`: `Interrupts` (a signal never splits an image between the sinks and the counter),
  `Terminated`;
- `loader`: the read-ahead loader (threads of this process, never forked workers);
- `job`: `EvalJob`, `build_job`, `dataset_fingerprint`;
- `progress`: the saved state, its fingerprint, resume, the running `Session`;
- `sinks`: the `Sink` protocol and the confusion-matrix, server-submission and evidence sinks;
  `predictions`: the --save-predictions sink;
- `record`: the result file, "kept" / protected results, the EvalResult;
- `loop`: the core loop; `run`: `run_job` in named steps and `evaluate`.

The package loads lazily: `repro.engine.options` (and the CLI importing it) stays free of torch.
"""

from __future__ import annotations

from repro.lazy import lazy_exports

_HOMES = {
    "devices": ("Collective", "Ranks", "device_label", "resolve_device", "setup_distributed"),
    "options": ("EngineOptions", "parse_device"),
    "job": ("EvalJob", "build_job", "dataset_fingerprint"),
    "loader": ("PREFETCH_DEPTH",),
    "progress": ("PROGRESS_DIR", "progress_path"),
    "run": ("LogCallback", "evaluate", "run_job"),
    "loop": ("PassCallback", "PhaseCallback", "ProgressCallback", "Watchers"),
    "signals": ("Interrupts", "Terminated"),
    "sinks": ("SUBMISSION_DIR",),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
