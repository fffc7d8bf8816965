#!/usr/bin/env bash
# Idempotent install of a real Label Studio server in its own virtualenv, for the integration test
# tests/test_label_studio_server.py (Label Studio pins its own dependencies, so it never goes into
# the project's .venv). bin/test runs it through scripts/install-test-deps.sh.
#   scripts/install-label-studio.sh           # install (about 1 GB, ~1-3 min from the registry)
#   OVPANOPTIC_LABEL_STUDIO_VENV=DIR ...      # where (default: ~/.cache/ovpanoptic/label-studio-VERSION)
# The venv is kept between runs (a stamp records the version), so later runs start at once.
# When it cannot be installed: a warning (the test is skipped, saying why); in CI (CI=true) an error.
set -euo pipefail

version="1.23.2"
venv="${OVPANOPTIC_LABEL_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ovpanoptic/label-studio-$version}"
say() { printf '[install-label-studio] %s\n' "$*" >&2; }
give_up() {
  if [ "${CI:-}" = "true" ]; then
    say "error: $*"
    exit 1
  fi
  say "warning: $*; the Label Studio server test will be skipped"
  exit 0
}

stamp="$venv/.ovpanoptic-label-studio"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -x "$venv/bin/label-studio" ]; then
  exit 0
fi
python_bin=""
for cand in python3.11 python3.12 python3.10 python3; do
  if command -v "$cand" >/dev/null 2>&1; then python_bin="$cand"; break; fi
done
[ -n "$python_bin" ] || give_up "no python3 found"
say "installing label-studio==$version into $venv (its own virtualenv, about 1 GB)"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python_bin" -m venv "$venv" || give_up "cannot create the virtualenv $venv"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! PIP_PROGRESS_BAR=off "$venv/bin/python" -m pip install -q --disable-pip-version-check "label-studio==$version" >"$log" 2>&1; then
  grep -v "is ignored: it is neither" "$log" | tail -n 20 >&2
  give_up "pip install label-studio==$version failed"
fi
"$venv/bin/label-studio" version >/dev/null 2>&1 || give_up "label-studio was installed but does not run"
echo "$version" > "$stamp"
say "ready: $venv/bin/label-studio"
