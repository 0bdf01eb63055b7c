#!/usr/bin/env bash
# Install afwpipe and everything it needs into the current Python environment.
#   scripts/install.sh         runtime dependencies
#   scripts/install.sh test    + test dependencies (pytest, scikit-learn)
# Everything `dvc repro` needs comes with the runtime install; the test extra holds only what tests/ import.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
case "${1:-}" in
  "") extra="" ;;
  test) extra="[test]" ;;
  *) echo "usage: scripts/install.sh [test]" >&2; exit 2 ;;
esac
# torch/torchvision first, pinned: timm needs torchvision, and these releases are the newest allowed
# on our machines (see docs/guide/install.md). A GPU machine gets the CUDA build from the same wheels.
$PY -m pip install --disable-pip-version-check -q "torch==2.14.1" "torchvision==0.29.1"
# facenet-pytorch (MTCNN weights ship inside it) pins torch<2.3 in its metadata but runs on current
# torch; install it without its dependencies so pip does not downgrade torch.
$PY -m pip install --disable-pip-version-check -q --no-deps "facenet-pytorch==2.6.0"
# retinaface-pytorch: afwpipe imports only its network, prior boxes and box decoding (torch, torchvision,
# numpy). Its metadata also requires streamlit, albumentations and iglovikov-helper-functions, and the last
# requires opencv-python beside our opencv-python-headless: both own the same cv2/ files, so whichever pip
# installs last wins. Installed without its dependencies, so exactly one distribution owns cv2.
$PY -m pip install --disable-pip-version-check -q --no-deps "retinaface-pytorch==0.0.7"
$PY -m pip install --disable-pip-version-check -q -e ".${extra}"
if [ -n "$extra" ]; then
  # tests/test_faces_retinaface.py compares with the package's own Model.predict_jsons, which imports
  # iglovikov-helper-functions (cv2, jpeg4py, PIL; its other imports are never reached); it requires
  # opencv-python, hence --no-deps (jpeg4py and albumentations are in the test extra).
  $PY -m pip install --disable-pip-version-check -q --no-deps "iglovikov-helper-functions==0.0.53"  # test extra
fi
