#!/usr/bin/env bash
# Throughput of the request path, measured with wrk on a release jarvis-local (2 threads,
# 64 connections, 10 s per route, one run): GET /health, a signed-in GET /archive?limit=20 and
# a signed-in POST /archive, then the store writes per request of the signed-in read run, read
# from the gateway's own /metrics. Prints the figures; asserts nothing.
#
#   ./infra/bench-http.sh            # DURATION=20s CONNECTIONS=128 to change the load
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
cargo build --release --quiet -p jarvis-local

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
DATA="$(mktemp -d)"
SCRIPTS="$(mktemp -d)"
# A limit no benchmark reaches: the limiter still leases its slices from the store.
JARVIS_RATE_LIMIT=1000000 JARVIS_LOG=warn target/release/jarvis-local --addr "127.0.0.1:$PORT" --data-dir "$DATA" >/dev/null &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA" "$SCRIPTS"' EXIT
for _ in $(seq 100); do curl -fs "$BASE/health" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
curl -fs -X POST "$BASE/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery staple"}' >/dev/null
TOKEN="$(curl -fs -X POST "$BASE/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery staple"}' | json '["access_token"]')"
for i in $(seq 40); do
  curl -fs -X POST "$BASE/archive" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"kind\":\"note\",\"title\":\"note $i\",\"content\":\"some text\",\"tags\":[\"bench\"]}" >/dev/null
done

cat >"$SCRIPTS/read.lua" <<LUA
wrk.headers["authorization"] = "Bearer $TOKEN"
LUA
cat >"$SCRIPTS/write.lua" <<LUA
wrk.method = "POST"
wrk.headers["authorization"] = "Bearer $TOKEN"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"kind":"note","title":"from wrk","content":"a short note","tags":["bench"]}'
LUA

rate() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
# Store puts and requests so far, from the Prometheus text.
counts() {
  curl -fs "$BASE/metrics" | python3 -c '
import re, sys
puts = requests = 0.0
for line in sys.stdin:
    if line.startswith("store_operations_total{") and "op=\"put\"" in line:
        puts += float(line.split()[-1])
    elif line.startswith("http_requests_total{"):
        requests += float(line.split()[-1])
print(puts, requests)'
}

HEALTH="$(rate "$BASE/health")"
read -r PUTS0 REQS0 <<<"$(counts)"
READ="$(rate -s "$SCRIPTS/read.lua" "$BASE/archive?limit=20")"
read -r PUTS1 REQS1 <<<"$(counts)"
WRITE="$(rate -s "$SCRIPTS/write.lua" "$BASE/archive")"

python3 - "$HEALTH" "$READ" "$WRITE" "$PUTS0" "$REQS0" "$PUTS1" "$REQS1" "$CONNECTIONS" <<'PY'
import sys
health, read, write, p0, r0, p1, r1, conns = sys.argv[1:]
health, read, write = float(health), float(read), float(write)
requests = float(r1) - float(r0) - 1  # less the /metrics request itself
writes = (float(p1) - float(p0)) / max(requests, 1)
print(f"wrk, 2 threads, {conns} connections, release jarvis-local on embedded libSQL")
print(f"  GET /health                     {health:9.0f} req/s")
print(f"  GET /archive?limit=20 (signed)  {read:9.0f} req/s   {read / health:.2f} x /health")
print(f"  POST /archive (signed)          {write:9.0f} req/s")
print(f"  store writes per signed-in read {writes:9.4f}   (a caller's leases: 10 / JARVIS_RATE_LIMIT by design)")
PY
