"""The demo's fake people and what they went through: subjects, studies and series,
staff, devices, the experimenter, clinical rows, the seed and UID root, and every
identifier planted (:data:`DEMO_PHI`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Seed of every NumPy generator used for pixel data and file order.
DEMO_SEED = 20230415

#: Root of every UID in the demo DICOM files: ``2.25.`` + the UUIDv5 of ``urn:imagedepot:demo``
#: (URL namespace), as an integer. Outputs of de-identification must not contain it
#: (unless ``retain_uids``).
DEMO_UID_ROOT = "2.25.39533400808365766813224216823340217857"

INSTITUTION = "St. Example General Hospital"
INSTITUTION_ADDRESS = "1 Example Road, Exampletown EX4 4MP, United Kingdom"
REFERRING = "QUILL^MARGARET^^DR"
PERFORMING = "BARTON^CLARA"
OPERATOR = "TECHNER^TOBY"
FAKE_FILE_NAME = (
    "plate&sizeX=512&sizeY=384&sizeZ=2&sizeC=2&pixelType=uint16"
    "&physicalSizeX=0.5&physicalSizeY=0.5.fake"
)
_IMPLEMENTATION_UID = f"{DEMO_UID_ROOT}.0.1"
_IMPLEMENTATION_VERSION = "IMAGEDEPOT_DEMO"
_STUDY_REFERENCE_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (reference only)


@dataclass(frozen=True)
class _Experimenter:
    first: str = "Alice"
    last: str = "Smithee"
    email: str = "alice.smithee@example.org"
    username: str = "asmithee"
    institution: str = "Example Institute of Cell Biology"


EXPERIMENTER = _Experimenter()
MICROSCOPY_ACQUISITION = "2023-03-14T10:22:05"


@dataclass(frozen=True)
class _Subject:
    folder: str
    family: str
    given: str
    patient_id: str
    other_id: str
    birth_date: str  # DICOM DA
    sex: str
    address: str
    phone: str
    height_m: float
    weight_kg: float
    consent: str
    consent_date: str  # ISO

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}"

    @property
    def plain_name(self) -> str:
        return f"{self.given.title()} {self.family.title()}"


SUBJECT_A = _Subject(
    folder="DOE_JOHN_19650312",
    family="DOE",
    given="JOHN",
    patient_id="MRN0012345",
    other_id="NHS-943-476-5919",
    birth_date="19650312",
    sex="M",
    address="12 Elm Street^^Springfield^^EX1 2AB^United Kingdom",
    phone="+44 20 7946 0123",
    height_m=1.82,
    weight_kg=84.0,
    consent="yes",
    consent_date="2023-03-01",
)
SUBJECT_B = _Subject(
    folder="ROE_JANE",
    family="ROE",
    given="JANE",
    patient_id="MRN0067890",
    other_id="NHS-485-777-3456",
    birth_date="19781102",
    sex="F",
    address="7 Harbour View^^Portsea^^EX2 9ZZ^United Kingdom",
    phone="+44 20 7946 0456",
    height_m=1.68,
    weight_kg=63.5,
    consent="yes",
    consent_date="2023-05-20",
)
SUBJECT_C = _Subject(
    folder="POE_EDGAR",
    family="POE",
    given="EDGAR",
    patient_id="MRN0099999",
    other_id="NHS-401-023-7788",
    birth_date="19490119",
    sex="M",
    address="3 Raven Lane^^Baltimoreton^^EX3 1NV^United Kingdom",
    phone="+44 20 7946 0789",
    height_m=1.73,
    weight_kg=70.0,
    consent="no",
    consent_date="2023-06-30",
)
SUBJECTS = (SUBJECT_A, SUBJECT_B, SUBJECT_C)


@dataclass(frozen=True)
class _Series:
    number: int
    modality: str  # MR, CT, OT (secondary capture) or US (ultrasound screen capture)
    description: str
    slices: int
    body_part: str
    protocol: str


@dataclass(frozen=True)
class _Study:
    index: int  # UID component, unique in the demo
    subject: _Subject
    date: str  # DA
    time: str  # TM
    accession: str
    study_id: str
    description: str
    series: tuple[_Series, ...]

    @property
    def uid(self) -> str:
        return f"{DEMO_UID_ROOT}.1.{self.index}"

    @property
    def requested_procedure_id(self) -> str:
        return f"RP{self.accession[3:]}"

    @property
    def step_id(self) -> str:
        return f"SPS{self.accession[3:]}"


STUDIES = (
    _Study(
        index=1,
        subject=SUBJECT_A,
        date="20230415",
        time="091233",
        accession="ACC23041501",
        study_id="MR230415",
        description="MRI BRAIN WITHOUT CONTRAST",
        series=(_Series(3, "MR", "T1 SE AXIAL", 20, "HEAD", "t1_se_tra"),),
    ),
    _Study(
        index=2,
        subject=SUBJECT_A,
        date="20230502",
        time="143005",
        accession="ACC23050207",
        study_id="CT230502",
        description="CT HEAD WITHOUT CONTRAST",
        series=(_Series(2, "CT", "HEAD 5mm AXIAL", 12, "HEAD", "Head_Routine"),),
    ),
    _Study(
        index=3,
        subject=SUBJECT_B,
        date="20230610",
        time="101500",
        accession="ACC23061012",
        study_id="CT230610",
        description="CT CHEST WITH CONTRAST",
        series=(
            _Series(2, "CT", "CHEST 10mm AXIAL", 8, "CHEST", "Thorax_Routine"),
            _Series(501, "OT", "PATIENT PROTOCOL", 1, "CHEST", "Thorax_Routine"),
            _Series(601, "US", "US CAPTURE", 1, "CHEST", "Pleura_Check"),
        ),
    ),
    _Study(
        index=4,
        subject=SUBJECT_C,
        date="20230720",
        time="081000",
        accession="ACC23072003",
        study_id="CT230720",
        description="CT ABDOMEN",
        series=(_Series(2, "CT", "ABDOMEN 10mm AXIAL", 5, "ABDOMEN", "Abdomen_Routine"),),
    ),
)

#: Stations and serial numbers per modality (device identity, removed unless retained).
_DEVICES = {
    "MR": ("SIEMENS", "Prisma", "EXMR01", "MRS-166021", "syngo MR XA30"),
    "CT": ("SIEMENS", "SOMATOM Force", "EXCT01", "CTS-75123", "syngo CT VA50"),
    "OT": ("SIEMENS", "SOMATOM Force", "EXCT01", "CTS-75123", "syngo CT VA50"),
    # a device no pixel-cleaning rule knows: its capture must end in quarantine
    "US": ("NONAME SONICS", "Pocket-1", "EXUS01", "USS-20931", "1.0"),
}

#: The secondary capture's size and where its text is: the demo policy's pixel-cleaning rule.
SC_SHAPE = (128, 128)
SC_TEXT_REGION = (0, 0, 128, 30)
#: The ultrasound capture's size (rows, columns); no rule matches it.
US_SHAPE = (96, 128)

#: Clinical rows: original patient id, ISO visit date, ICD-10 code, text, weight in kg.
CLINICAL_ROWS = (
    (SUBJECT_A.patient_id, "2023-04-15", "G43.909", "Migraine, unspecified, not intractable", 84.0),
    (SUBJECT_A.patient_id, "2023-05-02", "R51.9", "Headache, unspecified", 83.6),
    (SUBJECT_B.patient_id, "2023-06-10", "J18.9", "Pneumonia, unspecified organism", 63.5),
    (SUBJECT_B.patient_id, "2023-07-01", "J18.9", "Pneumonia, unspecified organism", 62.9),
    (SUBJECT_C.patient_id, "2023-07-20", "K80.20", "Calculus of gallbladder", 70.0),
)

NIFTI_ACQUISITION = "2023-04-15T09:14:10"


def _iso(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def _da(iso: str) -> str:
    return iso.replace("-", "")


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _collect_phi() -> tuple[str, ...]:
    out: list[str] = []
    for s in SUBJECTS:
        out += [s.name, s.family, s.given, s.plain_name, s.folder, s.patient_id, s.other_id]
        out += [s.birth_date, _iso(s.birth_date), s.consent_date, _da(s.consent_date)]
        out += [s.phone, s.address, *s.address.split("^")[:-1]]  # not the country
    for st in STUDIES:
        out += [st.date, _iso(st.date), st.accession, st.study_id]
        out += [st.requested_procedure_id, st.step_id]
    for _, visit, *_rest in CLINICAL_ROWS:
        out += [visit, _da(visit)]
    for pn in (REFERRING, PERFORMING, OPERATOR):
        parts = [p for p in pn.split("^") if p and p != "DR"]
        out += [pn, *parts]
    out += [INSTITUTION, INSTITUTION_ADDRESS]
    for _maker, _model, station, serial, _sw in _DEVICES.values():
        out += [station, serial]
    e = EXPERIMENTER
    out += [e.first, e.last, f"{e.first} {e.last}", e.email, e.username]
    out += [NIFTI_ACQUISITION]
    return _unique(out)


#: Every fake identifier planted in the demo: names and their parts, IDs, dates (DICOM and
#: ISO forms), addresses, phones, institution, accession numbers, staff, devices, experimenter.
#: The microscopy acquisition date is not listed: it is no person's data (non-human sample).
DEMO_PHI: tuple[str, ...] = _collect_phi()
