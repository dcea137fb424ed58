#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run calls it).
# Static checks first (fast), then the whole pytest suite: unit, CLI and workflow tests
# (snakemake --lint, dry runs of every test config, a real end-to-end run of the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff check";        ruff check src tests benchmarks
echo "== ruff format";       ruff format --check src tests benchmarks
echo "== mypy";              mypy
echo "== snakefmt";          snakefmt --check Snakefile rules/
echo "== pytest";            python -m pytest "$@"
