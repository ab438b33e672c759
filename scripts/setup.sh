#!/usr/bin/env bash
# Installs BlockLab's build dependencies from Debian, idempotently: only missing packages are
# installed, and `apt-get update` runs only when an install needs it. Works as root or with sudo.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev   # the engine's BLAS, its OpenMP build (chosen by measurement: docs/blas.md)
  libdnnl-dev              # oneDNN: bf16 matmuls on CPUs with AVX512-BF16 or AMX
  nlohmann-json3-dev       # JSON (safetensors headers, configs, CLI output)
  libcli11-dev             # command-line parsing
  libsqlite3-dev           # the store (the embedded default)
  libpq-dev                # the store on PostgreSQL (serve --db postgresql://…)
  postgresql               # PostgreSQL 15: the tests start their own server in a temporary folder
  nginx                    # docs/deploy.md's reverse proxy, run by tests/server/deploy_nginx_test.py
  libcpp-httplib-dev       # the tests' HTTP client
  libsodium-dev            # random tokens and their hashes (uploads' delete tokens)
  libpcre2-dev             # GPT-2's tokenizer: its pre-tokenizer's Unicode classes (src/text/)
  zlib1g-dev               # gzip for the web app's files
  libgtest-dev             # tests
  libbenchmark-dev         # micro-benchmarks
  chromium                 # the web app's browser tests (playwright-core drives it; docs/web.md)
  python3                  # tests/server/hostile_client_test.py (standard library only)
  python3-regex            # tests/text/gpt2_reference.py: GPT-2's encoder.py pre-tokenizes with this module
  pybind11-dev python3-dev python3-numpy  # the Python module blocklab (src/python/, docs/python.md)
  clang libclang-rt-14-dev # the fuzz harnesses: libFuzzer, ASan, UBSan (scripts/fuzz.sh)
  libomp-14-dev            # OpenMP for clang (the engine's kernels), the fuzz build
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${missing[@]}" \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
