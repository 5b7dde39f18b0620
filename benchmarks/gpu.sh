#!/usr/bin/env bash
# The GPU measurements in the README, as one script for a lent GPU machine (see README, Speed).
# Expects hydra-core/omegaconf/antlr4 wheels in .whl/ and MNIST's gzipped idx files in .gpu_data/MNIST/raw/
# (the GPU machine has torch, pandas, seaborn, but no Hydra and no network). Prepared with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
#   for f in $INITLAB_DATA/MNIST/raw/*; do gzip -c $f > .gpu_data/MNIST/raw/$(basename $f).gz; done
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 INITLAB_DATA=$PWD/.gpu_data INITLAB_CACHE=/tmp/initlab-cache
gunzip -kf .gpu_data/MNIST/raw/*.gz
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 benchmarks/check_cuda.py
python3 benchmarks/bench_single_run.py --device cuda --epochs 3
python3 benchmarks/bench_sweep.py --device cuda --configs 256 --epochs 10 --sequential 4
# issue 11: 1,024 configurations x 10 epochs end to end through the CLI, FP32 and TF32 (floor 60 s, goal 15 s)
python3 benchmarks/bench_gpu_grid.py --seeds 32 --epochs 10 --device cuda --out /tmp/initlab-grid
