#!/usr/bin/env bash
# Run verify.yml (the gpu_check role with its benchmark) on the NVIDIA GPU host this script runs on, with no network:
# ansible-core and keras come as wheels from .whl/, the host's own python (with PyTorch) is the environment checked,
# on Keras's torch backend. Copies the JSON report, the playbook's output and nvidia-smi's to $OUT.
#
# Usage, from anywhere in the repository:   OUT=/some/dir scripts/gpu-host-check.sh
# Settings (environment):
#   WHEELS=.whl            wheels of ansible-core and keras and their dependencies
#   SITE=/tmp/site         where they are installed (pip --target; unzipped when pip is missing)
#   PYTHON=python3         the interpreter checked; it also runs Ansible and its modules
#   KERAS_BACKEND=torch    Keras backend for the probe
#   GPU_REQUIRED=true      false lets a host without a GPU through (a CPU rehearsal of this script)
#   LIMIT_SECONDS=280      the playbook is stopped after this long (the whole check must take under five minutes)
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WHEELS=${WHEELS:-$ROOT/.whl}
SITE=${SITE:-/tmp/site}
PYTHON=$(command -v "${PYTHON:-python3}")
KERAS_BACKEND=${KERAS_BACKEND:-torch}
GPU_REQUIRED=${GPU_REQUIRED:-true}
LIMIT_SECONDS=${LIMIT_SECONDS:-280}
OUT=${OUT:-$ROOT/reports/gpu-host-check}
REPORTS=$(mktemp -d /tmp/gpubox-reports.XXXXXX)
mkdir -p "$OUT"
start=$SECONDS

say() { printf '[gpu-host-check %3ss] %s\n' "$((SECONDS - start))" "$*" | tee -a "$OUT/gpu-host-check.log"; }

say "python: $PYTHON ($("$PYTHON" --version 2>&1)); wheels: $WHEELS; site: $SITE; OUT: $OUT"
{ nvidia-smi || true; nvidia-smi -q -x || true; } > "$OUT/nvidia-smi.txt" 2>&1
ls "$WHEELS"/*.whl > /dev/null || { say "no wheels in $WHEELS"; exit 2; }

# --- ansible-core and keras, offline
mkdir -p "$SITE"
if "$PYTHON" -m pip --version > /dev/null 2>&1; then
  pip_install=("$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS" --target "$SITE")
  # Ubuntu's python is externally managed (PEP 668); --target leaves the system's packages alone.
  if "$PYTHON" -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
    pip_install+=(--break-system-packages)
  fi
  if ! "${pip_install[@]}" ansible-core keras 2>> "$OUT/gpu-host-check.log"; then
    say "pip could not resolve ansible-core and keras from $WHEELS alone; installing every wheel there without dependencies"
    "${pip_install[@]}" --no-deps "$WHEELS"/*.whl
  fi
else
  say "no pip for $PYTHON: unzipping the wheels into $SITE"
  "$PYTHON" - "$SITE" "$WHEELS"/*.whl <<'EOF'
import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
EOF
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export LC_ALL=C.UTF-8 LANG=C.UTF-8
export ANSIBLE_CONFIG=$ROOT/ansible.cfg ANSIBLE_FORCE_COLOR=false ANSIBLE_NOCOLOR=true
KERAS_BACKEND=$KERAS_BACKEND "$PYTHON" -c 'import ansible.release, keras; print("ansible-core", ansible.release.__version__, "keras", keras.__version__)' \
  2>&1 | tee -a "$OUT/gpu-host-check.log" | grep -q '^ansible-core' || { say "ansible-core or keras does not import from $SITE"; exit 2; }
say "installed: $(tail -n 1 "$OUT/gpu-host-check.log")"

# --- The check
# The host is named gpu-host, not localhost: the play's hosts (all:!localhost, as in configure.yml) leave localhost out.
vars=$(mktemp /tmp/gpubox-vars.XXXXXX.json)
"$PYTHON" - "$vars" <<EOF
import json, os, sys
become = os.geteuid() != 0  # root needs no sudo (and the host may have none)
json.dump({
    "ansible_python_interpreter": "$PYTHON",
    "ansible_become": become,
    "gpu_required": "$GPU_REQUIRED" == "true",
    "gpu_check_pythons": ["$PYTHON"],
    "gpu_check_probe_environment": {"KERAS_BACKEND": "$KERAS_BACKEND", "PYTHONPATH": "$SITE"},
    "gpu_check_probe_timeout": 200,
    "gpu_check_report_dir": "$REPORTS",
    "gpu_check_report_name": "gpu-host",
}, open(sys.argv[1], "w"))
EOF
say "running verify.yml (limit ${LIMIT_SECONDS}s)"
set +o errexit
timeout "$LIMIT_SECONDS" "$PYTHON" -m ansible playbook verify.yml -i gpu-host, -c local -e "@$vars" 2>&1 \
  | tee "$OUT/verify.log"
rc=${PIPESTATUS[0]}
set -o errexit
cp "$REPORTS"/*.json "$OUT"/ 2>/dev/null || say "no JSON report was written"
say "verify.yml exit status $rc; reports in $OUT: $(cd "$OUT" && ls -- *.json 2>/dev/null | tr '\n' ' ')"
exit "$rc"
