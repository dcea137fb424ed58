"""imagedepot: raw imaging data to public and controlled repositories.

All logic of the workflow lives in this package; the Snakemake rules only call its CLI.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
