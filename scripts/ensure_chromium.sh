#!/usr/bin/env bash
# The browser the UI tests drive: Debian's chromium package at /usr/bin/chromium (Playwright's own
# browser download is not used). Installs it with apt when it is missing and apt can be used (root, or
# sudo without a password); otherwise says why, and the browser tests skip with that reason.
set -euo pipefail
CHROMIUM=${MODELOPS_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: $CHROMIUM is missing and this system has no apt-get; the browser tests will skip" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure_chromium: $CHROMIUM is missing and apt-get needs root; install the chromium package (the browser tests will skip)" >&2
  exit 0
fi
echo "ensure_chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  echo "ensure_chromium: apt-get install chromium failed; the browser tests will skip" >&2
fi
