#!/usr/bin/env bash
# The GPU measurements in the README, as one script for a lent GPU machine (see README, Speed).
# Expects hydra-core/omegaconf/antlr4/submitit wheels in .whl/ and MNIST's gzipped idx files in
# .gpu_data/MNIST/raw/ (the GPU machine has torch, pandas, seaborn, but no Hydra and no network).
# Neither is in git: `bash benchmarks/gpu-prepare.sh` makes both here (a few seconds).
# Run with `carry: [.whl, .gpu_data]`. Output: stdout, and the sweeps' logs under $OUT (if set).
# STEPS picks parts (default: check single grid profile; also: sweep). All of it takes more than one
# call's 10 minutes: run it as two calls, STEPS='check grid' then STEPS='single profile'.
set -euo pipefail
STEPS=${STEPS:-"check single grid profile"}
[[ -d /tmp/site/hydra ]] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 INITLAB_DATA=$PWD/.gpu_data INITLAB_CACHE=/tmp/initlab-cache
gunzip -kf .gpu_data/MNIST/raw/*.gz
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
if [[ $STEPS == *check* ]]; then
    python3 benchmarks/check_cuda.py
    python3 benchmarks/check_member_drift.py --device cuda
fi
if [[ $STEPS == *single* ]]; then
    # a default run (10 epochs) and a one-epoch run of each variant: per epoch, once running, one-off
    python3 benchmarks/bench_single_run.py --device cuda ${SINGLE_ARGS:-}
    # the same steps' host and device costs measured apart (is the run bound by the GPU?), and
    # what a record step adds to each: the recording overhead without the host's jitter
    timeout 90 python3 benchmarks/host_device_split.py || echo "host/device split: stopped ($?)"
fi
if [[ $STEPS == *sweep* ]]; then
    python3 benchmarks/bench_sweep.py --device cuda --configs 256 --epochs 10 --sequential 4
fi
if [[ $STEPS == *grid* ]]; then
    # issue 11: 1,024 configurations x 10 epochs end to end through the CLI (floor 60 s, goal 15 s),
    # FP32 and TF32 with CUDA graphs (the defaults but TF32), and FP32 without them.
    # fp32-writes-here: the job folders written by the launcher alone (no write processes).
    # tf32 and fp32-eager were measured in gpu-h200-graphs.txt; GRID_VARIANTS=fp32,tf32,fp32-eager repeats them.
    python3 benchmarks/bench_gpu_grid.py --seeds 32 --epochs 10 --device cuda --out /tmp/initlab-grid \
        --variants ${GRID_VARIANTS:-fp32,fp32-writes-here}
    if [[ -n ${OUT:-} ]]; then cp /tmp/initlab-grid/*.log "$OUT"/; fi
fi
if [[ $STEPS == *profile* ]]; then
    # a graphed epoch, recording on and off: the GPU's kernel time against the epoch, the host's CUDA calls
    timeout 60 python3 benchmarks/profile_graphed_epoch.py || echo "graphed epoch profile: stopped ($?)"
    # the recording overhead (floor 10 %): a single run's plain and record steps, kernel by kernel
    timeout 120 python3 benchmarks/profile_record_step.py --device cuda || echo "record profile: stopped ($?)"
    # where the grid's build goes (13.9 s with its first epoch on the H200), part by part
    timeout 90 python3 benchmarks/profile_build.py --device cuda --members 256 || echo "build profile: stopped ($?)"
    # not finished inside 240 s at 1,024 members (five groups built); 256 now, the kernel table first,
    # and bounded so the script ends with what it has
    timeout 240 python3 benchmarks/profile_group_step.py --members 256 --steps 30 || echo "profile: stopped ($?)"
fi
