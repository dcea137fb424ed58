"""Allow ``python -m imagedepot``."""

from __future__ import annotations

import sys

from imagedepot.cli import main

sys.exit(main())
