"""Pictures for `repro explain --output DIR` (matplotlib, headless Agg, PNG).

- `images/<n>_<id>.png` for the worst images: image | ground truth | prediction | errors, with a
  legend of the classes shown;
- `confusion.png`: the row-normalised confusion matrix of the classes that matter (most wrong
  pixels, plus the targets of the top confusions);
- `class_iou.png`: per-class IoU, worst first.
Predictions come from the run's saved label PNGs (`predictions_dir`, `repro eval
--save-predictions`), else are recomputed for those images from the recorded checkpoint when it
is still there with the same sha256 (repro.explain.predictions: in fp32 on the CPU, with a note
on how far they agree with the run's recorded per-image counts), else the pictures are skipped
with the command that records them.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repro.explain.explanation import Explanation
from repro.text import clip

ERROR_RGB = (230, 30, 30)
# Ignored label pixels (not counted by the metric), in every panel and legend: a pale magenta that
# no dataset palette nor the generated colours use, at least 70 apart (RGB distance) from every one
# of them, from the errors panel's greys and from its red. (Black, used before, is the background
# class of LIP, VOC and Pascal-Context.)
IGNORE_RGB = (255, 160, 255)
MAX_HEATMAP_CLASSES = 12
MAX_BAR_CLASSES = 40


@dataclass
class Drawn:
    """What `draw_all` wrote, and why any picture is missing (one line each)."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def class_colours(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 distinct colours: hues spread by the golden ratio, two lightness levels."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        light, sat = (0.5, 0.75) if i % 2 == 0 else (0.38, 0.6)
        colours.append([round(255 * c) for c in colorsys.hls_to_rgb(hue, light, sat)])
    return np.asarray(colours, dtype=np.uint8).reshape(-1, 3)


def dataset_colours(dataset: str, num_classes: int) -> np.ndarray:
    """The dataset's own palette (what `repro eval --paint` uses), else distinct generated colours."""
    try:
        from repro.datasets.registry import palette

        colours = np.asarray(palette(dataset), dtype=np.uint8).reshape(-1, 3)
    except (ImportError, KeyError, ValueError):
        return class_colours(num_classes)
    return colours[:num_classes] if len(colours) >= num_classes else class_colours(num_classes)


def paint(label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """RGB picture of a class map; ignored pixels (< 0 or >= C) in IGNORE_RGB."""
    out = np.empty((*label.shape, 3), dtype=np.uint8)
    out[...] = IGNORE_RGB
    valid = (label >= 0) & (label < len(colours))
    out[valid] = colours[label[valid]]
    return out


def error_map(image_rgb: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The image dimmed to grey (100-189), wrong pixels red, ignored label pixels in IGNORE_RGB."""
    grey = image_rgb.mean(axis=2, keepdims=True).astype(np.float32)
    out = np.repeat(0.35 * grey + 100, 3, axis=2).astype(np.uint8)
    ignored = label < 0
    out[(prediction != label) & ~ignored] = ERROR_RGB
    out[ignored] = IGNORE_RGB
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def draw_image_panel(path: Path, image_bgr: np.ndarray, label: np.ndarray, prediction: np.ndarray,
                     class_names: Sequence[str], title: str, colours: np.ndarray | None = None) -> Path:
    """One row of four pictures and a legend of the classes in the label or the prediction."""
    plt = _pyplot()
    colours = class_colours(len(class_names)) if colours is None else colours
    image_rgb = np.ascontiguousarray(image_bgr[..., ::-1])
    panels = [("image", image_rgb), ("ground truth", paint(label, colours)),
              ("prediction", paint(prediction, colours)), ("errors (red)", error_map(image_rgb, label, prediction))]
    shown = _classes_shown(label, prediction, len(class_names))
    aspect = image_rgb.shape[0] / max(image_rgb.shape[1], 1)
    fig, axes = plt.subplots(1, 4, figsize=(12, 3 * aspect + 1.3), squeeze=False)
    for ax, (name, picture) in zip(axes[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    handles = [_patch(colours[c], clip(class_names[c], 22)) for c in shown[:16]]
    handles += [_patch(IGNORE_RGB, "ignored (not counted)"), _patch(ERROR_RGB, "wrong (errors panel)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.05 + 0.07 * (1 + len(handles) // 6), wspace=0.03)
    return _save(fig, path)


def _patch(rgb, label: str):
    """A legend entry, outlined so that a light colour still shows on the white page."""
    from matplotlib.patches import Patch

    return Patch(facecolor=np.asarray(rgb) / 255, edgecolor="0.4", linewidth=0.5, label=label)


def _classes_shown(label: np.ndarray, prediction: np.ndarray, num_classes: int) -> list[int]:
    """Classes in the picture, most pixels first."""
    values = np.concatenate([label[label >= 0].ravel(), prediction.ravel()])
    values = values[(values >= 0) & (values < num_classes)]
    counts = np.bincount(values, minlength=num_classes)
    return [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]



def _save(fig, path: Path) -> Path:
    from repro.fileio import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    _pyplot().close(fig)
    return path


def classes_that_matter(confusion: np.ndarray, limit: int = MAX_HEATMAP_CLASSES) -> list[int]:
    """The classes with the most wrongly predicted pixels, and where those pixels went."""
    wrong = confusion.sum(axis=1) - np.diag(confusion)
    chosen = [int(c) for c in np.argsort(-wrong, kind="stable") if wrong[c] > 0][: (limit + 1) // 2]
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    for g in list(chosen):
        target = int(np.argmax(off[g]))
        if off[g, target] > 0 and target not in chosen:
            chosen.append(target)
    if len(chosen) < limit:  # fill with the largest classes
        gt = confusion.sum(axis=1)
        chosen += [int(c) for c in np.argsort(-gt, kind="stable") if gt[c] > 0 and c not in chosen]
    return sorted(chosen[:limit])


def draw_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> Path:
    """Row-normalised (share of each label class's pixels) heatmap of the classes that matter."""
    plt = _pyplot()
    keep = classes_that_matter(confusion)
    rows = confusion[keep].astype(np.float64)
    totals = rows.sum(axis=1, keepdims=True)  # over every predicted class, not only those shown
    shares = np.divide(rows[:, keep], totals, out=np.zeros((len(keep), len(keep))), where=totals > 0)
    names = [clip(class_names[c], 18) for c in keep]
    size = 2.2 + 0.5 * len(keep)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(100 * shares, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if shares[i, j] >= 0.005:
                ax.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(keep)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion, % of each ground-truth class", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("% of the ground-truth class", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def draw_class_iou(path: Path, iou: np.ndarray, class_names: Sequence[str], miou: float | None) -> Path:
    """Horizontal bars of per-class IoU (percent), worst at the top; at most MAX_BAR_CLASSES."""
    plt = _pyplot()
    order = [int(c) for c in np.argsort(np.where(np.isnan(iou), np.inf, iou), kind="stable") if not np.isnan(iou[c])]
    shown = order[:MAX_BAR_CLASSES]
    values = [100 * float(iou[c]) for c in shown]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.24 * max(len(shown), 3)))
    colours = plt.get_cmap("RdYlGn")(np.asarray(values) / 100)
    ax.barh(range(len(shown)), values, color=colours)
    for y, value in enumerate(values):  # a 0 bar is invisible: the number says it is there
        ax.text(value + 1, y, f"{value:.1f}", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), [clip(class_names[c], 22) for c in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    more = f" ({len(shown)} worst of {len(order)})" if len(order) > len(shown) else ""
    mean = ""
    if miou is not None:
        ax.axvline(miou, color="black", linestyle="--", linewidth=1)
        mean = f"; dashed line: mIoU {miou:.2f}"
    ax.set_title(f"per-class IoU, worst first{more}{mean}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def draw_all(x: Explanation, output_dir: str | Path, num_images: int = 4) -> Drawn:
    """Every picture of an explanation into `output_dir`; notes say what could not be drawn."""
    from repro.explain.predictions import PredictionSource

    out, drawn = Path(output_dir), Drawn()
    ev = x.evidence
    if ev is None or not ev.has_labels:
        drawn.notes.append("no pictures: " + (x.missing or "a server run has no labels"))
        return drawn
    drawn.files.append(draw_class_iou(out / "class_iou.png", ev.scores().iou, x.class_names, x.result.miou))
    drawn.files.append(draw_confusion(out / "confusion.png", ev.confusion, x.class_names))
    ids = [row.image_id for row in x.worst_images[:num_images]]
    source = PredictionSource.for_result(x.path, x.result, ev)
    if source.problem:
        drawn.notes.append(source.problem)
        return drawn
    for rank, image_id in enumerate(ids, start=1):
        try:
            image, label, prediction = source.images(image_id)
        except Exception as err:  # one unreadable image must not hide the others
            from repro.errors import ReproError

            if not isinstance(err, (ReproError, OSError, KeyError, ValueError)):
                raise
            drawn.notes.append(f"{image_id}: not drawn ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
            continue
        row = next(r for r in x.worst_images if r.image_id == image_id)
        title = f"{image_id}: image mIoU {row.miou:.1f}, {100 * row.wrong:.1f}% of pixels wrong ({source.kind})"
        path = out / "images" / f"{rank:02d}_{_safe(image_id)}.png"
        colours = dataset_colours(x.result.dataset, len(x.class_names))
        drawn.files.append(draw_image_panel(path, image, label, prediction, x.class_names, title, colours))
    note = source.recomputed_note()
    if note:
        drawn.notes.append(note)
    return drawn
