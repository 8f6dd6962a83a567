#!/usr/bin/env bash
# Downloads bench/wheels.txt into .whl/ for the GPU image (Python 3.12, x86_64 manylinux: the device tool's
# README gives these flags), one version of each, so that `run(..., carry=[".whl"])` has all it needs.
# From the repo root, on the development machine (it needs PyPI; the GPU machine has no network):
#   bash bench/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t PINS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' bench/wheels.txt)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$TMP" "${PINS[@]}"
rm -rf .whl && mv "$TMP" .whl  # all or nothing: a failed download leaves the old .whl/ as it was
trap - EXIT
ls -1 .whl && du -sh .whl
