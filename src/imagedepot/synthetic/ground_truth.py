"""What the corpus records of each case: the drawn texts and their boxes (:class:`TextBox`),
and the file with its fake identifiers (:class:`CorpusCase`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The kinds of drawn text. ``safe`` is an allow-listed token (orientation marker ``L`` ``R``
#: ``A`` ``P`` ``H`` ``F``, scale label such as ``5 cm``); ``other`` is text that is neither an
#: identifier nor allow-listed (technical annotations such as ``kV 120`` or ``TR 500``).
KINDS = ("name", "id", "date", "accession", "institution", "other", "safe")

#: The header attributes whose values are drawn (keys of :attr:`CorpusCase.phi`).
PHI_KEYS = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "PatientBirthDate",
    "StudyDate",
    "InstitutionName",
)


@dataclass(frozen=True)
class TextBox:
    """One drawn text and the tight box of its ink.

    Attributes
    ----------
    x0, y0, x1, y1
        Bounding box in pixel coordinates of the image (``x`` is the column, ``y`` the row);
        ``x1`` and ``y1`` are exclusive, so the ink is ``frame[y0:y1, x0:x1]``.
    text
        The string drawn.
    kind
        One of :data:`KINDS`.
    frames
        The 0-based frames that show the text; ``None`` means every frame.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    kind: str
    frames: tuple[int, ...] | None = None

    def on_frame(self, frame: int) -> bool:
        """True if the text is drawn on ``frame`` (0-based)."""
        return self.frames is None or frame in self.frames

    def to_dict(self) -> dict[str, Any]:
        """The box as JSON-ready values (``frames`` a list or ``None``)."""
        return {
            "x0": self.x0,
            "y0": self.y0,
            "x1": self.x1,
            "y1": self.y1,
            "text": self.text,
            "kind": self.kind,
            "frames": None if self.frames is None else list(self.frames),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextBox:
        """The inverse of :meth:`to_dict`."""
        frames = d.get("frames")
        return cls(
            x0=int(d["x0"]),
            y0=int(d["y0"]),
            x1=int(d["x1"]),
            y1=int(d["y1"]),
            text=str(d["text"]),
            kind=str(d["kind"]),
            frames=None if frames is None else tuple(int(f) for f in frames),
        )


@dataclass(frozen=True)
class CorpusCase:
    """One written DICOM file and its ground truth.

    Attributes
    ----------
    name
        Unique, file-name safe; the label of the variant and a number (``ct-corner-00``).
    path
        The DICOM file.
    modality
        The DICOM Modality (CT, MR, CR, DX, MG, US, SC, XA).
    boxes
        Every text drawn, empty for a text-free image.
    phi
        The fake identifying header values (keys :data:`PHI_KEYS`: PatientName as a DICOM PN
        such as ``DOE^JOHN``, PatientID, AccessionNumber, PatientBirthDate and StudyDate as
        ``YYYYMMDD``, InstitutionName). Drawn texts of kinds ``name`` ... ``institution`` are
        renderings of these; text-free cases carry them in the header only.
    series
        The SeriesInstanceUID shared by the slices of a volumetric series, else ``None``.
    """

    name: str
    path: Path
    modality: str
    boxes: tuple[TextBox, ...]
    phi: dict[str, str]
    series: str | None = None

    @property
    def text_free(self) -> bool:
        """True if no text is drawn in the image."""
        return not self.boxes

    def to_dict(self, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The case as JSON-ready values; ``path`` is made relative to ``root`` when given."""
        path = Path(self.path)
        if root is not None:
            path = path.relative_to(Path(root))
        return {
            "name": self.name,
            "path": path.as_posix(),
            "modality": self.modality,
            "series": self.series,
            "text_free": self.text_free,
            "phi": dict(self.phi),
            "boxes": [b.to_dict() for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: str | os.PathLike[str] | None = None) -> CorpusCase:
        """The inverse of :meth:`to_dict` (a relative ``path`` is joined to ``root``)."""
        path = Path(d["path"])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        return cls(
            name=str(d["name"]),
            path=path,
            modality=str(d["modality"]),
            boxes=tuple(TextBox.from_dict(b) for b in d.get("boxes", [])),
            phi={str(k): str(v) for k, v in d.get("phi", {}).items()},
            series=d.get("series"),
        )
