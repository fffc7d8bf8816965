#!/usr/bin/env bash
# Regenerate requirements/lock.txt from the current .venv (after changing dependencies on purpose).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
{
  echo "# Exact versions of every dependency, installed by scripts/bootstrap.sh (regenerate with scripts/lock.sh)."
  echo "# sam2==1.1.0 is installed separately (SAM2_BUILD_CUDA=0, --no-build-isolation) and detectron2 from the"
  echo "# sal-detectron2==0.7.2 wheel without its _C extension: see scripts/bootstrap.sh."
  "$root/.venv/bin/python" -m pip freeze --exclude-editable \
    | grep -v -iE '^(sam2|sal-detectron2|ovpanoptic|pip|setuptools|wheel)=='
} > "$root/requirements/lock.txt"
