"""Planning: what a command will do before it does it.

- `plan`: the plan printed before an evaluation (images, passes, what is missing, time, peak
  memory), and the plan's view of a finished result;
- `budget`: `--dry-run --assume-device NAME`, the plan's time on a GPU you do not have;
- `launch`: `repro eval --launcher local|slurm` through submitit, one job per (model, protocol).
"""
