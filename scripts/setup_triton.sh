#!/usr/bin/env bash
# Prepare the online-serving runtime: a real Triton Inference Server (CPU, python backend).
#
# Creates .venv-triton (its own virtualenv: nvidia-pytriton pins numpy<2, the main venv has numpy 2)
# from the pinned requirements-triton.txt, then a backend directory for tritonserver's
# --backend-directory: a copy of the wheel's backends/python with the Python 3.11 stub
# (python_backend_stubs/3.11/triton_python_backend_stub) copied into it.
#
# Idempotent: a second run with an unchanged lock file does nothing. Needs only python3.11 and PyPI.
# Environment: PYTHON (default python3.11), MODELOPS_TRITON_VENV (default <project root>/.venv-triton).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
VENV="${MODELOPS_TRITON_VENV:-$ROOT/.venv-triton}"
LOCK="$ROOT/requirements-triton.txt"
LOG="$VENV/setup.log"

fail() { echo "setup_triton: $*" >&2; exit 1; }

[ -f "$LOCK" ] || fail "lock file not found: $LOCK"
command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found on PATH (set PYTHON to a Python 3.11 interpreter)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || fail "$PYTHON is not Python 3.11: the Triton python backend stub in the wheel is built for 3.11"

lock_hash="$(cat "$LOCK" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"  # the lock and this script
stamp="$VENV/.installed"
backends="$VENV/triton-backends"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ] && [ -x "$backends/python/triton_python_backend_stub" ]; then
  exit 0
fi

mkdir -p "$VENV"
: > "$LOG"
run() { "$@" >>"$LOG" 2>&1 || fail "failed: $* (log: $LOG)"; }

if [ ! -x "$VENV/bin/python" ]; then
  run "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || fail "$VENV holds another Python than 3.11: remove it and run this script again"
"$PY" -m pip --version >/dev/null 2>&1 || run "$PY" -m ensurepip --upgrade
"$VENV/bin/uv" --version >/dev/null 2>&1 || run "$PY" -m pip install --quiet --disable-pip-version-check uv
# Bytecode compiled once here: every model instance the python backend starts imports numpy and onnxruntime,
# and where PYTHONDONTWRITEBYTECODE is set (containers often do) they would be compiled again each time.
run "$VENV/bin/uv" pip sync --quiet --compile-bytecode --python "$PY" "$LOCK"

site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
server="$site/pytriton/tritonserver"
stub="$server/python_backend_stubs/3.11/triton_python_backend_stub"
[ -x "$server/bin/tritonserver" ] || fail "tritonserver not found in the nvidia-pytriton wheel: $server/bin/tritonserver"
[ -d "$server/backends/python" ] || fail "python backend not found in the nvidia-pytriton wheel: $server/backends/python"
[ -f "$stub" ] || fail "python 3.11 backend stub not found in the nvidia-pytriton wheel: $stub"

rm -rf "$backends.tmp"
mkdir -p "$backends.tmp"
cp -r "$server/backends/python" "$backends.tmp/python"
cp "$stub" "$backends.tmp/python/triton_python_backend_stub"
chmod +x "$backends.tmp/python/triton_python_backend_stub"
rm -rf "$backends"
mv "$backends.tmp" "$backends"

echo "$lock_hash" > "$stamp"
