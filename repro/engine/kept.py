"""A finished result of the very evaluation a run asks for: is it kept, and which of the run's
options was it not computed with? One rule for the engine (`run_job`) and for `repro eval`, which
keeps finished runs without loading torch (this module loads none unless the run's predictions
folder must be checked).

A kept result is not redone: the options that change how or where it runs, or what is written
beside it, do not change its number, so they are named ("not applied") rather than applied. Saved
predictions of the kept result that are out of step with it (gone, overwritten by another run,
left over) are the exception: the run is redone so that the folder holds what the result names.
"""

from __future__ import annotations

from pathlib import Path

from repro.engine.options import EngineOptions, parse_device
from repro.results.files import EvalResult


def not_applied(kept: EvalResult, options: EngineOptions) -> list[str]:
    """The options of a run that the kept result was not computed with (`--device auto` asks for
    whatever device is there, so any device the result names is what it asked for)."""
    ignored = []
    if options.save_predictions is not None:
        folder = Path(options.save_predictions).expanduser().resolve()
        painted = not options.paint or (folder / "paint").is_dir()
        if kept.predictions_dir is None or Path(kept.predictions_dir) != folder or not painted:
            ignored.append(f"--save-predictions {folder}" + (" --paint" if options.paint else ""))
    engine = kept.engine or {}
    if "max_batch" in engine and engine["max_batch"] != options.max_batch:
        ignored.append(f"--max-batch {options.max_batch}")
    if "resize_on_cpu" in engine and engine["resize_on_cpu"] != options.resize_on_cpu:
        ignored.append("--cpu-resize" if options.resize_on_cpu else "no --cpu-resize")
    kind, _ = parse_device(options.device)
    if kind != "auto" and kept.device.split(" (")[0].split(":")[0] != kind:
        ignored.append(f"--device {options.device}")
    return ignored


def kept_line(result_file: Path, ignored: list[str]) -> str:
    """What a run says of the finished result it keeps."""
    if not ignored:
        return f"kept: {result_file} (use --force to redo)"
    return (f"kept: {result_file}; not applied: {', '.join(ignored)} (--force redoes the run with them, "
            "or give another --results)")


def kept_predictions_missing(kept: EvalResult, options: EngineOptions, result_file: Path) -> int:
    """How many prediction PNGs in the folder this run asks for are out of step with the finished
    result that names it: gone, left over from another run, or the folder now another run's (0
    when the run asks for none or another folder: that is an option not applied)."""
    if options.save_predictions is None or kept.predictions_dir is None or not kept.evidence:
        return 0
    folder = Path(options.save_predictions).expanduser().resolve()
    if Path(kept.predictions_dir) != folder:
        return 0
    from repro.engine.predictions import folder_owner, predictions_out_of_step, result_identity
    from repro.results.evidence import load

    if folder_owner(folder) != result_identity(kept):  # another run writes there since (a --force)
        return kept.num_images
    ids = [str(i) for i in load(result_file.with_name(kept.evidence)).image_ids]
    return predictions_out_of_step(folder, kept.dataset, ids)
