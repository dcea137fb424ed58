"""The run report's figures, drawn with matplotlib's object API (no pyplot: no global state, no
display). Every function writes one PNG atomically and returns its path; with nothing to show it
still writes a figure that says so (a report item must exist)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.io import atomic_path
from imagedepot.report.images import NiftiPicture, OmeImage
from imagedepot.report.tables import AccountingRow, PolicyUse, RuleCost

#: Figure resolution (dots per inch).
DPI = 100
#: Short names of the PS3.15 action codes (axis labels).
ACTION_LABELS = {
    "D": "D dummy",
    "Z": "Z emptied",
    "X": "X removed",
    "K": "K kept",
    "C": "C cleaned",
    "U": "U new UID",
}
#: Colours of the three outcomes, everywhere in the report.
OUTCOME_COLOURS = {"processed": "#2e7d32", "quarantined": "#e65100", "excluded": "#757575"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: str | Path, *, force: bool) -> Path:
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return Path(path)


def message_figure(path: str | Path, title: str, message: str, *, force: bool = False) -> Path:
    """A small figure holding only a title and a sentence."""
    fig = _figure(8, 1.6)
    fig.suptitle(title, fontsize=13)
    fig.text(0.5, 0.4, message, ha="center", va="center", fontsize=11, color="#374151")
    return _save(fig, path, force=force)


def accounting_chart(
    rows: Sequence[AccountingRow], path: str | Path, *, force: bool = False
) -> Path:
    """Horizontal stacked bars per dataset: processed, quarantined, excluded (found at the end)."""
    if not rows:
        return message_figure(path, "Inputs per dataset", "No input was found.", force=force)
    fig = _figure(9, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    names = [r.dataset for r in rows][::-1]
    left = np.zeros(len(rows))
    for outcome, colour in OUTCOME_COLOURS.items():
        values = np.array([getattr(r, outcome) for r in rows][::-1], dtype=float)
        ax.barh(names, values, left=left, color=colour, label=outcome)
        left += values
    for y, r in enumerate(rows[::-1]):
        ax.text(left[y] + 0.05, y, f"found {r.found}", va="center", fontsize=9)
    ax.set_xlabel("inputs (items and unreadable files)")
    ax.set_xlim(0, max(left.max(), 1) * 1.25)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower right", fontsize=9)
    total = sum(r.found for r in rows)
    ax.set_title(
        f"found {total} = {sum(r.processed for r in rows)} processed + "
        f"{sum(r.quarantined for r in rows)} quarantined + "
        f"{sum(r.excluded for r in rows)} excluded by policy"
    )
    return _save(fig, path, force=force)


def policy_actions_chart(
    uses: Sequence[PolicyUse], path: str | Path, *, force: bool = False
) -> Path:
    """Per policy, the DICOM attribute actions counted (bars by PS3.15 action code)."""
    shown = [u for u in uses if u.actions]
    if not shown:
        return message_figure(
            path, "DICOM actions per policy", "No DICOM file was de-identified.", force=force
        )
    codes = sorted({c for u in shown for c in u.actions})
    fig = _figure(9, 1.4 + 0.5 * len(codes) * len(shown))
    ax = fig.add_subplot()
    height = 0.8 / len(shown)
    y = np.arange(len(codes))
    for i, u in enumerate(shown):
        values = [u.actions.get(c, 0) for c in codes]
        bars = ax.barh(y + i * height, values, height=height, label=u.name)
        ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_yticks(y + height * (len(shown) - 1) / 2, [ACTION_LABELS.get(c, c) for c in codes])
    ax.invert_yaxis()
    ax.set_ylabel("PS3.15 action")
    ax.set_xlabel("DICOM attributes (all files of the run)")
    ax.set_title("What each policy did to DICOM attributes")
    ax.legend(fontsize=9)
    return _save(fig, path, force=force)


def benchmark_chart(costs: Sequence[RuleCost], path: str | Path, *, force: bool = False) -> Path:
    """Per rule: wall-clock seconds (all jobs) and peak resident memory (largest job)."""
    if not costs:
        return message_figure(
            path, "Time and memory per step", "No benchmark file was given.", force=force
        )
    fig = _figure(10, 1.5 + 0.42 * len(costs))
    ax_time, ax_mem = fig.subplots(1, 2, sharey=True)
    names = [c.rule for c in costs]
    bars = ax_time.barh(names, [c.seconds for c in costs], color="#1565c0")
    ax_time.bar_label(bars, labels=[f"{c.seconds:.1f} s ({c.jobs})" for c in costs], fontsize=8)
    ax_time.set_xlabel("wall-clock seconds, all jobs (number of jobs)")
    ax_time.invert_yaxis()
    ax_time.margins(x=0.3)
    mem = [c.max_rss_mb or 0.0 for c in costs]
    bars = ax_mem.barh(names, mem, color="#6a1b9a")
    ax_mem.bar_label(
        bars, labels=["n/a" if c.max_rss_mb is None else f"{c.max_rss_mb:.0f}" for c in costs],
        fontsize=8,
    )  # fmt: skip
    ax_mem.set_xlabel("peak resident memory of a job (MB)")
    ax_mem.margins(x=0.3)
    fig.suptitle("Time and memory per step (Snakemake benchmark files)")
    return _save(fig, path, force=force)


def _picture(ax: Any, img: np.ndarray, aspect: float = 1.0) -> None:
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
    else:
        ax.imshow(img, aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _shown_note(fig: Any, shown: int, total: int, what: str) -> None:
    if total > shown:
        fig.text(0.01, 0.002, f"showing {shown} of {total} {what}", fontsize=9, color="#b91c1c")


def thumbnails_gallery(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    total: int,
    path: str | Path,
    *,
    force: bool = False,
) -> Path:
    """Before/after pictures of blanked (or refused) images, one row each: (label, before,
    after or None when the image was refused)."""
    if not rows:
        return message_figure(
            path,
            "Burned-in text: before and after",
            "No image had burned-in text blanked or refused in this run.",
            force=force,
        )
    fig = _figure(9, 0.6 + 3.6 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (label, before, after), (ax_b, ax_a) in zip(rows, axes, strict=True):
        _picture(ax_b, before)
        ax_b.set_title("before", fontsize=9)
        ax_b.set_ylabel(label, fontsize=8)
        if after is None:
            ax_a.set_axis_off()
            ax_a.text(0.5, 0.5, "refused: quarantined", ha="center", va="center", fontsize=11)
        else:
            _picture(ax_a, after)
            ax_a.set_title("after", fontsize=9)
    fig.suptitle("Burned-in text: before and after (red: blanked, or found in a refused image)")
    _shown_note(fig, len(rows), total, "images")
    return _save(fig, path, force=force)


def _level_title(level: Any) -> str:
    dims = " x ".join(str(n) for n in level.shape)
    title = f"level {level.level}: {dims}"
    if level.pixel_size is not None:
        unit = {"micrometer": "\u00b5m", "nanometer": "nm", "millimeter": "mm"}.get(
            level.unit, level.unit
        )
        title += f"\n{level.pixel_size[1]:g} {unit}/px".rstrip()
    if level.cropped:
        title += " (centre crop)"
    return title


def ome_zarr_gallery(
    images: Sequence[tuple[str, OmeImage]], total: int, path: str | Path, *, force: bool = False
) -> Path:
    """Every level of every OME-Zarr image, one row per image: (item, image)."""
    if not images:
        return message_figure(
            path, "OME-Zarr images per level", "No OME-Zarr image was staged.", force=force
        )
    cols = max(len(img.levels) for _, img in images)
    fig = _figure(max(3.0 * cols, 6.0), 0.6 + 3.2 * len(images))
    axes = fig.subplots(len(images), cols, squeeze=False)
    for (item, img), row in zip(images, axes, strict=True):
        for ax in row[len(img.levels) :]:
            ax.set_axis_off()
        for level, ax in zip(img.levels, row, strict=False):
            _picture(ax, level.picture)
            ax.set_title(_level_title(level), fontsize=8)
        where = f"{img.store}/{img.image}" if img.image else img.store
        row[0].set_ylabel(f"{item}\n{where}", fontsize=8)
    fig.suptitle("OME-Zarr: each image at each resolution level (t=0, middle z)")
    _shown_note(fig, len(images), total, "images")
    return _save(fig, path, force=force)


def nifti_gallery(
    pictures: Sequence[tuple[str, NiftiPicture]],
    total: int,
    path: str | Path,
    *,
    force: bool = False,
) -> Path:
    """Mid-slices in three planes of every NIfTI file, one row per file: (item, picture)."""
    if not pictures:
        return message_figure(path, "NIfTI mid-slices", "No NIfTI file was staged.", force=force)
    fig = _figure(10, 0.6 + 3.3 * len(pictures))
    axes = fig.subplots(len(pictures), 3, squeeze=False)
    for (item, pic), row in zip(pictures, axes, strict=True):
        for (plane, img, aspect), ax in zip(pic.planes, row, strict=True):
            _picture(ax, img, aspect)
            ax.set_title(plane, fontsize=9)
        zooms = " x ".join(f"{z:g}" for z in pic.zooms)
        shape = " x ".join(str(n) for n in pic.shape)
        row[0].set_ylabel(f"{item}\n{pic.name}\n{shape} vox, {zooms} {pic.unit}", fontsize=8)
    fig.suptitle("NIfTI: middle slices in three planes (neurological view: left is left)")
    _shown_note(fig, len(pictures), total, "files")
    return _save(fig, path, force=force)
