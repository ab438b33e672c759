#!/usr/bin/env bash
# Sets up, builds and runs BlockLab's main job. Until the server lands (`blocklab serve`), the main
# job is the command line itself: this prints its help.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/blocklab --help
