"""Why a number is what it is, from a result and its evidence sidecar (`repro explain`, `repro diff`).

- `explanation`: `explain_result` -> `Explanation` (Δ, conditions, per-class IoU, confusions,
  worst images) and its text / JSON;
- `checks`: the one-line cause checks (never-predicted classes, shifted labels, ignore share, ...);
- `predictions`: an image's prediction for a picture (the saved PNG, else recomputed);
- `draw`: the matplotlib pictures; `html`: the self-contained explain page and report appendix;
- `diff`: `repro diff A B`, what changed between two runs of one row.
"""
