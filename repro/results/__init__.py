"""Results: what the engine writes and the rules every reader of it shares.

Modules (imports point down this list):
- `files`: `EvalResult` (one JSON file per evaluation), file names, read / write / archive;
- `freshness`: `RunConditions`, `same_evaluation` (is a result the evaluation that would run
  now?) and `replacement_refused` (what protects a complete result of other conditions);
- `selftest_records`: the `repro selftest` record a result cites;
- `evidence`: `Evidence`, the per-image sidecar `<result stem>.evidence.npz` (numpy);
- `comparison`: the one rule that compares a measured number with a documented one;
- `brackets`: which comparable precision of a row is compared, and the spread of the others;
- `current`: which of a row's results counts (`choose_result`).

The file API is named here for users (`from repro.results import read_result`); code inside repro
imports each name from the module that defines it. Nothing here loads torch; only `evidence`
loads numpy.
"""

from repro.results.files import (  # noqa: F401  (the public file API)
    EvalResult, evidence_path, filename_of, load_results, read_result, result_filename, write_result,
)
from repro.results.freshness import RunConditions, conditions_of, same_evaluation  # noqa: F401
