"""A user's ``deid`` recipe, honoured on top of the PS3.15 profile.

Teams that already de-identify with pydicom's ``deid`` keep their recipe: a policy names it
(``deidentification.deid_recipe``) and :func:`imagedepot.deid.dicom.deidentify_dicom` applies it
to every file. The recipe is read by this module (``deid`` itself need not be installed) and
checked when the policy loads: anything this module cannot honour exactly is an error naming the
line, before any data moves.

Precedence (fail closed)
------------------------
The recipe runs **after** the Basic Profile and its options, on what the profile left, and
**before** imagedepot sets the pseudonym and the conformance attributes. So a recipe can remove,
empty, replace, add or shift more, never less: ``KEEP`` cannot bring back what the profile
removed (choose the option that keeps it, e.g. ``retain_longitudinal_full_dates``, which the
policy checks against its destinations); ``REMOVE ALL`` removes what the profile kept. The
attributes imagedepot owns at the top level (:data:`PROTECTED`: Patient's Name and ID, which
carry the pseudonym; the SOP, study and series UIDs, which name files and are remapped
consistently; the conformance attributes; the Image Pixel module) are left to it; recipe lines
that name them exactly are listed in :attr:`Recipe.superseded`.

Supported
---------
``FORMAT dicom``; ``%header`` with ``ADD``, ``BLANK``, ``JITTER``, ``KEEP``, ``REMOVE`` and
``REPLACE``; fields given as a keyword or name (``PatientName``), a tag (``(0010,0010)``,
``00100010``, ``0x00100010``), a private tag with its creator (``(0033,"CREATOR",1E)``), ``ALL``,
or the expanders ``startswith:``, ``endswith:``, ``contains:`` and ``except:`` (regular
expressions matched, ignoring case, against keyword, name and tag of each element, at every depth
of every sequence); literal values. ``%filter`` sections with ``LABEL`` groups of conditions and
coordinates (see :mod:`imagedepot.deid.pixels`): labels with coordinates become pixel-cleaning
rules, labels without coordinates flag images as carrying text (refused unless a rule cleans
them); the ``whitelist`` group is not used, as a recipe cannot declare images clean here.

When several lines match an element, the action wins in deid's order
``KEEP > ADD > REPLACE > JITTER > REMOVE > BLANK``; among lines of the same action, the last.
``ADD`` sets a top-level attribute (created if absent); ``REPLACE`` changes existing ones only.
``JITTER`` moves dates (DA) and date-times (DT) by a whole number of days and ignores other
values. Values are converted to the attribute's value representation; a value that does not fit
(text for a number, anything for binary data or a sequence) quarantines the file.

Not supported (an error at load): values computed by deid's Python callbacks (``var:``,
``func:``, ``deid_func:``), conditional ``REMOVE`` with a value, ``select:``/``fields:``/
``values:`` field lists and the ``%values``/``%fields`` sections, other formats than ``dicom``.

Modules: :mod:`.fields` (constants, :class:`RecipeError`, the fields of header actions),
:mod:`.model` (the parsed :class:`Recipe`), :mod:`.filters` (``%filter`` labels), :mod:`.parse`
(:func:`parse_recipe`, :func:`load_recipe`) and :mod:`.header` (:func:`apply_header`).
"""

from __future__ import annotations

from imagedepot.deid.recipe.fields import (
    HEADER_ACTIONS,
    LOG_CODES,
    PRIORITY,
    PROTECTED,
    FieldSpec,
    RecipeError,
    parse_field,
)
from imagedepot.deid.recipe.header import ActionLogger, ValueMismatch, apply_header, jitter_value
from imagedepot.deid.recipe.model import FilterLabel, HeaderAction, Recipe
from imagedepot.deid.recipe.parse import load_recipe, parse_recipe

__all__ = [
    "HEADER_ACTIONS",
    "LOG_CODES",
    "PRIORITY",
    "PROTECTED",
    "ActionLogger",
    "FieldSpec",
    "FilterLabel",
    "HeaderAction",
    "Recipe",
    "RecipeError",
    "ValueMismatch",
    "apply_header",
    "jitter_value",
    "load_recipe",
    "parse_field",
    "parse_recipe",
]
