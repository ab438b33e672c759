#!/usr/bin/env bash
# A bounded load test of the interactive endpoints, on loopback only: starts `blocklab serve` on a free
# port with a scratch store, runs wrk (Debian's package) against /api/compute/ffn and /api/compute/block
# with 64 connections for a fixed time, prints p50/p90/p99 and max latency, throughput and errors, and
# stops everything.
#   tools/load_test.sh [--hostile] [seconds per endpoint, default 10] [connections, default 64]
# --hostile: then /api/compute/ffn once more while tools/hostile_load.py keeps 24 slow clients (a request
# head trickled one byte per second) and 24 slow readers of a training run's event stream connected, and
# prints how many of them were still connected at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
hostile=0
args=()
for a in "$@"; do
  case "$a" in
    --hostile) hostile=1 ;;
    *) args+=("$a") ;;
  esac
done
secs=${args[0]:-10}
conns=${args[1]:-64}
command -v wrk >/dev/null || { echo "load_test: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x build/blocklab ] || scripts/build.sh
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build/blocklab serve --port "$port" --db "$tmp/load.db" --quiet --threads 16 2>"$tmp/serve.log" &
server=$!
hostile_pid=""
trap '[ -n "$hostile_pid" ] && kill $hostile_pid 2>/dev/null; kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
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
  io.write(string.format("  requests %d in %.1f s (%.0f/s); p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("  errors: connect %d, read %d, write %d, timeout %d, non-2xx %d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
end
LUA
  echo "/api/compute/$ep: $conns connections, $secs s, 2 wrk threads"
  wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s -s "$tmp/$ep.lua" "http://127.0.0.1:$port/api/compute/$ep" | sed -n '/requests/,$p' | grep '^  '
done

if [ "$hostile" = 1 ]; then
  # The hostile clients stay a little longer than wrk runs, so that they are there for all of it.
  python3 tools/hostile_load.py --port "$port" --seconds "$((secs + 3))" --slow 24 --watchers 24 >"$tmp/hostile.out" 2>&1 &
  hostile_pid=$!
  for _ in $(seq 100); do grep -q '^hostile: ready' "$tmp/hostile.out" && break; sleep 0.1; done
  sed -n 's/^hostile: /  /p' "$tmp/hostile.out"
  echo "/api/compute/ffn with 24 slow clients and 24 event-stream watchers: $conns connections, $secs s, 2 wrk threads"
  wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s -s "$tmp/ffn.lua" "http://127.0.0.1:$port/api/compute/ffn" | sed -n '/requests/,$p' | grep '^  ' || true
  wait "$hostile_pid" || true
  hostile_pid=""
  grep -v '^hostile: ready' "$tmp/hostile.out" | sed 's/^hostile: /  /'
fi
