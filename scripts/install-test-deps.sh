#!/usr/bin/env bash
# Idempotent install of what the test suite needs outside .venv: a real Label Studio server in its
# own virtualenv (scripts/install-label-studio.sh, for tests/test_label_studio_server.py), and
# Debian's chromium and chromium-driver, for the demo's browser test (tests/test_demo_browser.py).
# bin/test runs it. Nothing happens when they are there. When one cannot be installed, it warns and
# its test skips, saying why; in CI (CI=true), where the registries are expected to work, it is an error.
set -euo pipefail

"$(dirname "${BASH_SOURCE[0]}")/install-label-studio.sh"

say() { printf '[install-test-deps] %s\n' "$*" >&2; }
give_up() {
  if [ "${CI:-}" = "true" ]; then
    say "error: $*"
    exit 1
  fi
  say "warning: $*; the browser test will be skipped"
  exit 0
}

[ -x /usr/bin/chromium ] && exit 0

command -v apt-get >/dev/null 2>&1 || give_up "apt-get not found: install chromium (Debian's package) yourself"
as_root=()
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    give_up "not root and no password-less sudo: run 'sudo apt-get install chromium chromium-driver'"
  fi
fi

export DEBIAN_FRONTEND=noninteractive
say "installing Debian's chromium and chromium-driver: apt-get update && apt-get install -y chromium chromium-driver"
${as_root[@]+"${as_root[@]}"} apt-get update -q || give_up "apt-get update failed"
${as_root[@]+"${as_root[@]}"} apt-get install -y -q chromium chromium-driver || give_up "apt-get install chromium chromium-driver failed"
[ -x /usr/bin/chromium ] || give_up "chromium was installed but /usr/bin/chromium is missing"
say "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
