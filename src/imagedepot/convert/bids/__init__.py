"""BIDS-like layout of converted series: which folder (datatype), suffix and entities each NIfTI gets.

The mapping reads the JSON sidecar that :func:`imagedepot.convert.nifti.convert_dicom_series`
writes next to each NIfTI and returns a path such as
``sub-SUBJ7Q3K/ses-1/anat/sub-SUBJ7Q3K_ses-1_T1w.nii.gz``. Use the sidecar of the *conversion*
(trusted zone): the de-identified sidecar may have lost ``SeriesDescription`` and
``ProtocolName``, which most rules read. Only the path built from the rules leaves, never the
matched text.

Rules
-----
A rules file is YAML (the default ships as ``imagedepot/data/bids_rules.yaml``; pass another with
:func:`load_rules`)::

    bids_rules_version: 1
    fallback: {datatype: unknown, suffix: unknown}
    rules:
      - name: t1w
        match: {"SeriesDescription|ProtocolName": '(?<![a-z0-9])t1(?![0-9])|mprage'}
        datatype: anat
        suffix: T1w

The **first rule whose conditions all match wins**; a sidecar no rule matches goes to the
fallback (never dropped). A condition is ``field: regular expression``:

* the expression is searched (Python :func:`re.search`, case-insensitive) in the field's value;
* ``A|B`` as the field matches when either field matches;
* a list value (``ImageType``) is joined with ``\\`` (``ORIGINAL\\PRIMARY\\M\\ND``), a number is
  written as JSON (``EchoNumber`` 1 is ``1``), ``true``/``false`` for booleans;
* a field the sidecar lacks never matches.

A rule sets ``datatype`` (lower-case letters) and ``suffix`` (letters and digits), and may set:

* ``entities``: fixed labels, e.g. ``{task: rest, acq: mprage}`` (entities ``task``, ``acq``,
  ``ce``, ``rec``, ``dir``, ``mod``, ``inv``, ``mt``, ``flip``);
* ``labels_from``: fields (``A|B``) whose text is searched for ``<entity>-<label>`` pairs, as in
  ReproIn-style protocol names (``func-bold_task-nback_dir-AP``); found labels override
  ``entities``;
* ``echo: false``: do not add ``echo-<EchoNumber>`` (by default it is added when the sidecar has
  an ``EchoNumber``, as for multi-echo series; field-map magnitudes carry the echo in their
  suffix instead);
* ``part: false``: do not add ``part-phase`` to phase images (``ImageType`` with ``P`` or
  ``PHASE``); by default phase images get ``part-phase`` and, in :func:`bids_layout`, the
  magnitude images of the same acquisition get ``part-mag``.

Datatypes outside the BIDS specification (:data:`BIDS_DATATYPES`) are allowed on purpose: the
default rules use ``ct`` for CT (BIDS has no CT datatype yet), ``localizer`` for localizers and
scouts, ``derived`` for images the scanner derived (ADC, FA, MPR...) and ``unknown`` for the
fallback. :meth:`BidsRules.bidsignore` lists them for a ``.bidsignore`` file so that BIDS
validators skip them.

Labels
------
BIDS labels are letters and digits only: :func:`bids_label` drops everything else (the
pseudonym ``SUBJ-7Q3K9D2M4XHA`` becomes ``SUBJ7Q3K9D2M4XHA``). A label that ends up empty is an
error.

Modules: :mod:`.rules` (the rules file and its matching; labels), :mod:`.layout` (paths and run
numbers) and :mod:`.tree` (the workflow's ``results/bids/`` tree, :func:`write_bids_tree`).
"""

from __future__ import annotations

from imagedepot.convert.bids.layout import bids_layout, bids_relpath
from imagedepot.convert.bids.rules import (
    BIDS_DATATYPES,
    BidsRule,
    BidsRules,
    BidsTarget,
    bids_label,
    default_rules_text,
    field_text,
    load_rules,
    parse_rules,
)
from imagedepot.convert.bids.tree import BidsClashError, write_bids_tree

__all__ = [
    "BIDS_DATATYPES",
    "BidsClashError",
    "BidsRule",
    "BidsRules",
    "BidsTarget",
    "bids_label",
    "bids_layout",
    "bids_relpath",
    "default_rules_text",
    "field_text",
    "load_rules",
    "parse_rules",
    "write_bids_tree",
]
