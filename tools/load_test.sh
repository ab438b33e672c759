#!/usr/bin/env bash
# A bounded load test of the interactive endpoints, on loopback only: starts `blocklab serve` on a free
# port with a scratch store, runs wrk (Debian's package) against /api/compute/ffn and /api/compute/block
# with 64 connections for a fixed time, prints p50/p99 latency, throughput and errors, and stops everything.
#   tools/load_test.sh [seconds per endpoint, default 10] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { echo "load_test: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x build/blocklab ] || scripts/build.sh
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build/blocklab serve --port "$port" --db "$tmp/load.db" --quiet --threads 16 2>"$tmp/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done

# The interactive shape: 16 tokens of the built-in model (d_model 64, d_ff 128).
x=$(python3 -c 'import json, math; print(json.dumps([[math.sin(0.1*(t*64+k)) for k in range(64)] for t in range(16)]))')
cat >"$tmp/ffn.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "chars-small", "x": $x}'
LUA
cat >"$tmp/block.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "chars-small", "text": "Four score and ", "track": 3}'
LUA
for ep in ffn block; do
  cat >>"$tmp/$ep.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("  requests %d in %.1f s (%.0f/s); p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("  errors: connect %d, read %d, write %d, timeout %d, non-2xx %d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
end
LUA
  echo "/api/compute/$ep: $conns connections, $secs s, 2 wrk threads"
  wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s -s "$tmp/$ep.lua" "http://127.0.0.1:$port/api/compute/$ep" | sed -n '/requests/,$p' | grep '^  '
done
