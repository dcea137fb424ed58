"""Pixel data: pixel-cleaning rules, burned-in text found by OCR, before/after thumbnails and
recognizable visual features (the :class:`_PixelCleaner` part of the per-file engine)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.deid.dicom.action_log import _FileLog
from imagedepot.deid.dicom.reading import _PIXEL_TAGS
from imagedepot.deid.dicom.remap import _Remapper
from imagedepot.deid.pixels import DatasetAttributes, PixelRule, blank_regions, burned_in_reason
from imagedepot.errors import InputError
from imagedepot.pixeltext import identifiers as text_ids
from imagedepot.pixeltext.dicom import (
    PixelTextError,
    PixelTextResult,
    PixelTextSettings,
    clean_pixel_text,
    mask_boxes,
    write_thumbnails,
)
from imagedepot.pixeltext.render import Renderer, frames

log = logging.getLogger(__name__)


def _rule_fields(rules: Sequence[PixelRule]) -> tuple[str, ...]:
    """Every attribute the rules and the burned-in check read (the key of the rule cache)."""
    fields = {"BurnedInAnnotation", "Modality", "SOPClassUID"}
    for rule in rules:
        fields.update(rule.match)
        if rule.criteria is not None:
            for _, line in rule.criteria.lines:
                fields.update(c.field for _, c in line)
    return tuple(sorted(fields))


class _PixelCleaner(_Remapper):
    """Pixel cleaning (rules, burned-in text) for :class:`~.engine._Engine` (its attributes,
    set by its ``__init__`` and per file, declared here)."""

    options: frozenset[str]
    pixel_rules: tuple[PixelRule, ...]
    rule_cache: dict[tuple[str, ...], tuple[str | None, tuple[PixelRule, ...]]]
    rule_fields: tuple[str, ...]
    pixel_text: PixelTextSettings | None
    known: text_ids.Identifiers
    thumbnails: Path | None
    ocr_skip: frozenset[str]
    text_report: dict[str, Any] | None
    flog: _FileLog

    def _pixels(self, ds: Any, path: Path) -> list[str]:
        """Apply matching pixel-cleaning rules; refuse burned-in text that nothing cleans."""
        if not any(t in ds for t in _PIXEL_TAGS):
            return []
        attrs = DatasetAttributes(ds)
        key = tuple(str(attrs.get(f)) for f in self.rule_fields)
        cached = self.rule_cache.get(key)
        if cached is None:
            reason = burned_in_reason(attrs)
            matched = tuple(r for r in self.pixel_rules if r.matches(attrs))
            flag = str(attrs.get("BurnedInAnnotation") or "").strip().upper()
            if reason is None and matched and flag != "NO":
                reason = (
                    f"BurnedInAnnotation={flag or 'absent'}, "
                    f"pixel-cleaning rule {matched[0].name!r} matches"
                )
            cached = (reason, matched)
            self.rule_cache[key] = cached
        reason, matched = cached
        cleaning = [r for r in matched if r.cleans]
        if "clean_pixel_data" in self.options and cleaning:
            before = self._first_frame(ds) if self.thumbnails is not None else None
            try:
                blanked = blank_regions(ds, cleaning)
            except ValueError as exc:
                raise InputError(path, f"cannot clean pixel data: {exc}") from exc
            self.flog.add("", 0x7FE00010, "C")
            if before is not None:
                self._rule_thumbs(ds, *before, blanked)
            return [r.name for r in cleaning]
        if self.pixel_text is not None:
            # with text detection, the header's hints alone no longer refuse an image: the
            # detector reads it (:meth:`_text`); a rule of the policy that only flags (such as
            # a recipe's blacklist) still refuses what it names
            flagged = [r for r in matched if not r.cleans]
            if flagged and not cleaning:
                raise InputError(
                    path,
                    f"burned-in annotation possible (flagged by {flagged[0].name!r}) and no "
                    "pixel-cleaning rule cleans it",
                )
            return []
        if reason is None:
            return []
        if "clean_pixel_data" not in self.options:
            why = "clean_pixel_data is not in the policy"
        elif matched:
            why = f"no pixel-cleaning rule cleans it (flagged by {matched[0].name!r})"
        else:
            why = "no pixel-cleaning rule matches"
        raise InputError(path, f"burned-in annotation possible ({reason}) and {why}")

    def _text(self, ds: Any, path: Path, rules_applied: Sequence[str]) -> bool:
        """Burned-in text found by OCR: blank it as the policy says, verify, or refuse.

        Returns True when the pixel data were changed. Overlay planes (groups 60xx) go first
        (PS3.15: overlay data removed; the rest of the plane is meaningless without it).
        """
        if self.pixel_text is None or not any(t in ds for t in _PIXEL_TAGS):
            return False
        for tag in [int(t) for t in ds.keys()]:  # noqa: SIM118 - tags, not elements
            group = tag >> 16
            if 0x6000 <= group <= 0x601E and group % 2 == 0:
                self.flog.add("", tag, "X")
                del ds[tag]
        if str(path) in self.ocr_skip:
            self.text_report = {"sampled_out": True}
            return False
        flag = str(ds.get("BurnedInAnnotation") or "").strip().upper()
        known = text_ids.from_dataset(ds)
        known.update(self.known)
        try:
            result = clean_pixel_text(
                ds, self.pixel_text, known, may_blank="clean_pixel_data" in self.options
            )
        except PixelTextError as exc:
            self._thumbs(ds, PixelTextResult(found=exc.regions, before=exc.before, after=exc.after))
            boxes = "; ".join(
                f"frame {r.frame} box {list(r.box)} ({r.engine})" for r in exc.regions[:8]
            )
            raise InputError(path, f"burned-in text: {exc.reason}: {boxes}") from None
        except ValueError as exc:
            raise InputError(path, f"cannot check pixel data for burned-in text: {exc}") from None
        except RuntimeError as exc:  # an engine missing: fail closed
            raise InputError(path, f"burned-in text detector unavailable: {exc}") from None
        self.text_report = {"frames_read": result.frames, "found": len(result.found)}
        if result.found:
            self.text_report.update(result.to_dict())
        if not result.changed:
            if flag == "YES" and not rules_applied:
                raise InputError(
                    path,
                    "BurnedInAnnotation is YES but no text was detected and no pixel-cleaning "
                    "rule applies: cannot verify the annotation is gone",
                )
            return False
        self.text_report["encoding"] = result.encoding
        self.flog.add("", 0x7FE00010, "C")
        self._thumbs(ds, result)
        return True

    def _thumbs(self, ds: Any, result: PixelTextResult, suffix: str = "") -> None:
        if self.thumbnails is None:
            return
        name = self.uid(str(ds.get("SOPInstanceUID") or "image")) + suffix
        try:
            write_thumbnails(result, self.thumbnails, name)
        except OSError as exc:
            log.warning("cannot write thumbnails: %s", exc)

    @staticmethod
    def _first_frame(ds: Any) -> tuple[Renderer, Any] | None:
        """A renderer made from the original attributes and a copy of the first frame, kept
        before a pixel-cleaning rule blanks it (for the run report's thumbnails)."""
        try:
            return Renderer(ds), frames(ds)[0].copy()
        except ValueError:
            return None

    def _rule_thumbs(self, ds: Any, renderer: Renderer, before: Any, blanked: Any) -> None:
        """Before/after thumbnails of an image blanked by pixel-cleaning rules
        (``<uid>.rules.before.png``), the blanked areas outlined."""
        try:
            after = frames(ds)[0]
            result = PixelTextResult(
                blanked=mask_boxes(blanked),
                before=renderer.renderings(before)[0][1],
                after=renderer.renderings(after)[0][1],
            )
        except ValueError as exc:
            log.warning("cannot render thumbnails: %s", exc)
            return
        self._thumbs(ds, result, ".rules")

    def _visual_features(self, ds: Any, path: Path) -> None:
        if "clean_recognizable_visual_features" not in self.options:
            return
        flag = str(ds.get("RecognizableVisualFeatures") or "").strip().upper()
        modality = str(ds.get("Modality") or "").strip().upper()
        if flag == "YES" or (not flag and modality == "XC"):
            raise InputError(
                path,
                "recognizable visual features possible and clean_recognizable_visual_features "
                "is in the policy (this package does not deface DICOM images)",
            )
