#!/usr/bin/env bash
# Sets up, builds and runs BlockLab's main job: the server with the API and the web app on
# http://127.0.0.1:8080 (run store: blocklab.db, an SQLite file). Extra arguments go to `blocklab serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/web.sh build
exec build/blocklab serve "$@"
