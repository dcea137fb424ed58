"""Shared helpers of the validator tests."""

from __future__ import annotations

import shutil

import pytest

needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) not installed"
)
