#!/usr/bin/env bash
# Downloads the wheels that the GPU machine lacks (bench/gpu/wheels.txt) into .whl/ at the repository root
# (git-ignored), built for its CPython 3.12 on manylinux x86_64, then prints their size and the size of what a
# device call carries with them (the working tree's files plus .whl/; the limit is 64 MiB).
#     bash bench/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl
mkdir .whl
grep -v '^#' bench/gpu/wheels.txt | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl
wheels=$(du -sk .whl | cut -f1)
tree=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- | tail -1 | cut -f1)
echo "$(ls .whl | wc -l) wheels in .whl/: ${wheels} KiB; with the working tree: $((wheels + tree)) KiB (limit 65536)"
