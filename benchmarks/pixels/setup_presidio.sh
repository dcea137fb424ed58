#!/usr/bin/env bash
# Make the venv of the Presidio baseline (benchmarks/pixels/presidio_baseline.py).
#
#   bash benchmarks/pixels/setup_presidio.sh [VENV]
#
# VENV defaults to .venv-presidio in the repository root. It is a venv of its own because
# presidio-image-redactor requires opencv-python<5 and the project's venv has opencv-python 5.
# Installs the exact pins of requirements-presidio.txt (no spaCy model: the baseline runs on
# spacy.blank("en")), then checks that Tesseract is there (installs Debian's tesseract-ocr when
# it is missing and this runs as root with apt-get) and that the baseline's engine builds.
# Python: $PYTHON, or python3 (3.11 to 3.14, as Presidio requires).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/.venv-presidio}"
python="${PYTHON:-python3}"

"$python" - <<'PY'
import sys
if not ((3, 11) <= sys.version_info[:2] < (3, 15)):
    sys.exit(f"Presidio needs Python 3.11 to 3.14, this is {sys.version.split()[0]}")
PY

if ! command -v tesseract >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq tesseract-ocr
    else
        echo "tesseract not found: install Tesseract 5 (Debian: apt-get install tesseract-ocr)" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-presidio.txt"

# The engine builds without any spaCy model and Tesseract answers.
"$venv/bin/python" - "$here" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import pytesseract
import presidio_baseline
presidio_baseline.build_engine("all")
print(f"presidio baseline ready (tesseract {pytesseract.get_tesseract_version()})")
PY
echo "run: $venv/bin/python $here/presidio_baseline.py --in-dir DIR --out-dir DIR > out.jsonl"
