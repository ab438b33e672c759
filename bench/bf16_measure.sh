#!/bin/bash
# The bf16 mode measured on a CPU with bf16 dot products (AVX512-BF16 or AMX); docs/performance.md holds a run.
#
#   bench/bf16_measure.sh [BIN_DIR]     (default build; PYTHON=python3 with PyTorch)
#
# 1. correctness of the native path there: the GEMM tests (every transpose, alpha, beta, stride against a
#    double-precision sum over bf16-rounded inputs) and the trainer's bf16 tests; the threaded kernels' tests;
# 2. which oneDNN implementations run the bf16 copy step's matmuls (ONEDNN_VERBOSE);
# 3. native against the emulation (BLOCKLAB_BF16=emulate) and float32, BlockLab alone, 1, 2 and all threads;
# 4. side by side with PyTorch (float32, and its autocast bf16);
# 5. the seeds' copy task trained to >= 99% in both precisions, both libraries.
# OpenBLAS 0.3.21 (Debian 12) does not know every new Intel core and may fall back to its slowest kernels;
# the script prints what it chose. Set OPENBLAS_CORETYPE (e.g. Cooperlake) for a fair float32 side.
set -u
bin=${1:-build}
py=${PYTHON:-python3}
threads_all=$(nproc)

echo "== CPU"
grep -m1 "model name" /proc/cpuinfo
echo "bf16 flags: $(grep -o 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} (OpenBLAS without it: $(env -u OPENBLAS_CORETYPE "$bin/blocklab" bench --json --filter none | grep '"blas"'))"

echo "== 1. tests of the native path"
"$bin/engine_blas_test" --gtest_brief=1
"$bin/lab_trainer_test" --gtest_brief=1 --gtest_filter='Trainer.*:TrainOptionsJson.*'
# and, on this machine's thread count, the kernels split over threads: the same bits as on one thread
"$bin/engine_kernels_test" --gtest_brief=1 --gtest_filter='Attention.*'
"$bin/engine_optimizer_test" --gtest_brief=1 --gtest_filter='Optimizer.SameBits*'

echo "== 2. oneDNN's implementations in one bf16 copy step (calls, implementation)"
ONEDNN_VERBOSE=1 "$bin/blocklab" bench --filter copy_train_step_bf16 --budget-s 0.01 --min-repeats 1 \
  | grep '^onednn_verbose,exec' | cut -d, -f5 | sort | uniq -c

echo "== 3. BlockLab: native, emulated, float32"
for t in 1 2 "$threads_all"; do
  "$bin/blocklab" bench --threads "$t" --filter gemm --budget-s 0.5
  BLOCKLAB_BF16=emulate "$bin/blocklab" bench --threads "$t" --filter gemm_bf16 --budget-s 0.5 | tail -2
  "$bin/blocklab" bench --threads "$t" --filter copy_train_step --budget-s 1
  BLOCKLAB_BF16=emulate "$bin/blocklab" bench --threads "$t" --filter copy_train_step_bf16 --budget-s 1 | tail -2
done

echo "== 4. side by side with PyTorch"
"$py" bench/torch_compare.py --binary "$bin/blocklab" --threads 1 2 "$threads_all" --budget-s 0.5 --markdown \
  --cases gemm_bf16 copy_train_step copy_train_step_bf16

echo "== 5. the copy task to >= 99%"
"$py" bench/copy_task_torch.py --binary "$bin/blocklab" --steps 100 --threads 1 --precision f32 bf16
