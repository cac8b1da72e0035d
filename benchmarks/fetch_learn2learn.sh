#!/usr/bin/env bash
# Fetch learn2learn 0.2.0's MAML source (pure Python) for a machine with no package registry.
#
# The GPU benchmark (benchmarks/gpu_check.sh) compares our engine with learn2learn's MAML on a
# machine that cannot install packages. learn2learn's `algorithms/maml.py` needs only
# `algorithms/base_learner.py`, `utils/__init__.py` and torch, so this script downloads the
# official sdist from PyPI, checks its sha256, and extracts exactly those files (plus the
# version and licence) into .l2l/ (ignored by git; nothing of learn2learn enters the repository).
# benchmarks/l2l_worker.py --l2l-src .l2l imports them without learn2learn's top-level
# __init__ (which would pull in its datasets, torchvision and gym).
#
#   bash benchmarks/fetch_learn2learn.sh [DEST]      (default: .l2l)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.l2l}
SHA256=69f1d7cb0d0a6be7a2c6ad8e83e2ebbe70fb05e51d61e45e63078b40c75ea419
WORK=$(mktemp -d /tmp/l2l-src.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: learn2learn==0.2.0 -d "$WORK"
got=$(sha256sum "$WORK/learn2learn-0.2.0.tar.gz" | cut -d' ' -f1)
if [ "${L2L_SHA256:-$SHA256}" != "$got" ]; then
    echo "fetch_learn2learn: sha256 of learn2learn-0.2.0.tar.gz is $got, expected ${L2L_SHA256:-$SHA256}" >&2
    exit 1
fi
tar xzf "$WORK/learn2learn-0.2.0.tar.gz" -C "$WORK"
src="$WORK/learn2learn-0.2.0"
rm -rf "$DEST"
for f in learn2learn/_version.py learn2learn/algorithms/maml.py learn2learn/algorithms/base_learner.py \
         learn2learn/utils/__init__.py LICENSE; do
    mkdir -p "$DEST/$(dirname "$f")"
    cp "$src/$f" "$DEST/$f"
done
echo "fetch_learn2learn: learn2learn 0.2.0 MAML source in $DEST"
