#!/usr/bin/env bash
# Set everything up, then run the cmakit notebook pipeline.
#   bash run_all.sh [--profile smoke|cpu|paper] [--out DIR] [--seeds N] [--set KEY=VALUE ...]
# Default: the `cpu` profile on the embedded world. `bash run_all.sh --help` lists the options.
set -euo pipefail
# Relative paths (--out, --set pretrained=..., data roots, cache_dir) are the caller's.
export CMAKIT_CALLER_CWD="$PWD"
cd "$(dirname "$0")"
source scripts/setup.sh
python -m cmakit.pipeline.runner "$@"
