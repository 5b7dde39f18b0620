#!/usr/bin/env bash
# Makes what benchmarks/gpu.sh carries to a lent GPU machine, in a fresh checkout (neither is in git):
#   .whl/        hydra-core, omegaconf, antlr4, submitit and Hydra's submitit launcher as py3.12 wheels
#                (the GPU machine has torch, pandas and seaborn, but no Hydra and no network)
#   .gpu_data/   MNIST's four idx files, gzipped (from $INITLAB_DATA, else ../shared/data)
# and lists both in .git/info/exclude, so that `run` carries them only when asked: carry [.whl, .gpu_data].
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
data=${INITLAB_DATA:-../shared/data}
pip=${PIP:-.venv/bin/pip}
mkdir -p .whl .gpu_data/MNIST/raw
"$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1 \
    hydra-submitit-launcher==1.2.0 submitit==1.5.4
"$pip" wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
for f in "$data"/MNIST/raw/*-ubyte; do gzip -c "$f" > ".gpu_data/MNIST/raw/$(basename "$f").gz"; done
for path in .whl .gpu_data; do
    grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
ls .whl .gpu_data/MNIST/raw
du -sh .whl .gpu_data
