#!/usr/bin/env bash
# Builds bench/gemm_libs.cpp against OpenBLAS (its OpenMP build, the engine's; the pthread build too where
# installed), BLIS and oneDNN (Debian packages) and prints their sgemm timings at BlockLab's shapes, 1 and 2
# threads. How the engine's BLAS was chosen: docs/blas.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ml=/usr/lib/x86_64-linux-gnu
inc=/usr/include/x86_64-linux-gnu
libs="openblas blis dnnl"
g++ -O2 -std=c++20 bench/gemm_libs.cpp -I$inc/openblas-openmp -L$ml/openblas-openmp -lopenblas -Wl,-rpath,$ml/openblas-openmp -o "$out/openblas"
if [ -d $ml/openblas-pthread ]; then  # the pthread build, where installed (libopenblas0-pthread)
  g++ -O2 -std=c++20 -DLIB_LABEL=\"OB-pthrd\" bench/gemm_libs.cpp -I$inc/openblas-pthread -L$ml/openblas-pthread -lopenblas -Wl,-rpath,$ml/openblas-pthread -o "$out/openblas-pthread"
  libs="openblas openblas-pthread blis dnnl"
fi
g++ -O2 -std=c++20 -DUSE_BLIS bench/gemm_libs.cpp -I$inc/blis-openmp -L$ml/blis-openmp -lblis -Wl,-rpath,$ml/blis-openmp -o "$out/blis"
g++ -O2 -std=c++20 -DUSE_DNNL bench/gemm_libs.cpp -ldnnl -o "$out/dnnl"
for t in 1 2; do
  for lib in $libs; do
    OMP_NUM_THREADS=$t "$out/$lib" "$t"
  done
done
