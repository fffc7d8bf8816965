#!/usr/bin/env bash
# Idempotent set-up of the project's virtualenv (.venv) with pinned dependencies.
#   scripts/bootstrap.sh          # runtime + test dependencies
#   scripts/bootstrap.sh --force  # redo every step even if the stamp says it is up to date
# Re-running is cheap: a stamp in .venv records the hash of the files that define the environment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OVPANOPTIC_VENV:-$root/.venv}"
python_bin="${OVPANOPTIC_PYTHON:-}"
force=0
[ "${1:-}" = "--force" ] && force=1

say() { printf '[bootstrap] %s\n' "$*" >&2; }

stamp_inputs=("$root/requirements/lock.txt" "$root/pyproject.toml" "$root/scripts/bootstrap.sh")
want_stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
stamp_file="$venv/.ovpanoptic-stamp"
if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  exit 0
fi

if [ -z "$python_bin" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
      python_bin="$cand"; break
    fi
  done
fi
[ -n "$python_bin" ] || { say "no Python >= 3.10 found; install python3.11 (or set OVPANOPTIC_PYTHON)"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check)
export PIP_PROGRESS_BAR=off

say "installing build tools and torch (torch==2.14.1, torchvision==0.29.1)"
"${pip[@]}" install -q -r "$root/requirements/bootstrap.txt"
"${pip[@]}" install -q -c "$root/requirements/lock.txt" torch torchvision

say "installing sam2==1.1.0 without its CUDA extension"
SAM2_BUILD_CUDA=0 "${pip[@]}" install -q --no-build-isolation -c "$root/requirements/lock.txt" sam2==1.1.0

say "installing pinned dependencies (requirements/lock.txt)"
"${pip[@]}" install -q -r "$root/requirements/lock.txt"

# detectron2 has no wheel for this Python; sal-detectron2 is a real detectron2 build for 3.10 whose
# pure-Python parts work here. Its compiled _C and a stray top-level 'tools' package are removed.
# An existing detectron2 (e.g. one built from source by the user) is left alone.
if "$py" -c 'import detectron2' >/dev/null 2>&1; then
  say "detectron2 already importable: left as it is"
else
  say "installing pure-Python detectron2 from sal-detectron2==0.7.2"
  purelib="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "${pip[@]}" install -q --no-deps --only-binary=:all: --python-version 3.10 --target "$tmp" sal-detectron2==0.7.2
  rm -f "$tmp"/detectron2/_C*.so
  rm -rf "$tmp/tools"
  distinfo="$(ls -d "$tmp"/sal_detectron2-*.dist-info)"
  grep -v -E '^(tools/|detectron2/_C)' "$distinfo/RECORD" > "$distinfo/RECORD.new" && mv "$distinfo/RECORD.new" "$distinfo/RECORD"
  rm -rf "$purelib/detectron2" "$purelib/$(basename "$distinfo")"
  mv "$tmp/detectron2" "$distinfo" "$purelib/"
  "$py" -c 'from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs; from detectron2.utils.visualizer import Visualizer' \
    || { say "detectron2 installed but does not import"; exit 1; }
fi

say "installing ovpanoptic (editable)"
"${pip[@]}" install -q --no-deps --no-build-isolation -e "$root"

echo "$want_stamp" > "$stamp_file"
say "environment ready: $venv"
