#!/usr/bin/env bash
# Set everything up, then run cmakit's test suite. Extra arguments go to pytest,
# e.g. `bash run_tests.sh -k metrics -x`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
python -m pytest -ra "$@"
