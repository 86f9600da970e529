#!/usr/bin/env bash
# Runs schemathesis (all checks; examples, coverage, fuzzing and stateful phases) against a
# real jarvis-local on a free loopback port, with a fresh data directory, generous rate
# limits and sync on. A fixed seed and a bounded example count keep it reproducible and short.
# Exits non-zero on any failure. Expects schemathesis in .tools/venv (infra/test.sh puts it
# there) and builds jarvis-local if needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.tools/venv/bin/python"
cd "$ROOT"

cargo build --quiet -p jarvis-local
# Wherever the target directory is (CARGO_TARGET_DIR, a workspace setting).
TARGET="$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  status=$?
  running=false
  [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null && running=true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  # On a failure, the server's own account of it: its warnings and errors, or all it said
  # when it had stopped by itself.
  if [ "$status" -ne 0 ] && [ -f "$WORK/server.log" ]; then
    if [ "$running" = true ]; then
      echo "--- jarvis-local warnings and errors ---"
      grep -E "WARN|ERROR" "$WORK/server.log" | tail -n 60 || true
    else
      echo "--- jarvis-local stopped by itself; its last words ---"
      tail -n 40 "$WORK/server.log" || true
    fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
export JARVIS_ST_SYNC_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
JARVIS_SYNC_TOKEN="$JARVIS_ST_SYNC_TOKEN" JARVIS_RATE_LIMIT=1000000 JARVIS_AUTH_RATE_LIMIT=1000000 \
  JARVIS_LOCKOUT_THRESHOLD=1000 JARVIS_LOG=warn JARVIS_AI_LOCAL_DIR="$WORK/no-models" \
  "$TARGET/debug/jarvis-local" --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  > "$WORK/server.log" 2>&1 &
SERVER="$!"

export JARVIS_ST_EMAIL="schemathesis@example.com"
export JARVIS_ST_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
# Waits for the server, signs up (the first account is the admin) and creates an API key with
# every scope.
JARVIS_ST_API_KEY="$("$PY" - "$BASE" <<'PY'
import json, os, sys, time, urllib.request

base = sys.argv[1]

def call(path, body, token=None):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)

for _ in range(120):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("jarvis-local did not answer /health within a minute")
credentials = {"email": os.environ["JARVIS_ST_EMAIL"], "password": os.environ["JARVIS_ST_PASSWORD"]}
call("/auth/register", credentials)
token = call("/auth/login", credentials)["access_token"]
scopes = ["archive:read", "archive:write", "crdt:read", "crdt:write", "ai", "chat:read", "chat:write",
          "knowledge:read", "knowledge:write", "agents:read", "agents:write", "automations:read",
          "automations:write", "trading:read", "trading:write", "admin"]
print(call("/auth/api-keys", {"name": "schemathesis", "scopes": scopes}, token)["key"])
PY
)"
export JARVIS_ST_API_KEY

# Bodies of sound are sent as raw bytes (infra/schemathesis_hooks.py).
PYTHONPATH="$ROOT/infra${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$ROOT/.tools/venv/bin/schemathesis" --config-file infra/schemathesis.toml run "$BASE/openapi.json" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  --seed "${JARVIS_ST_SEED:-20261122}" --max-examples "${JARVIS_ST_EXAMPLES:-25}" \
  --workers 1 --no-shrink --request-timeout 30 \
  --report junit --report-dir "$ROOT/.tools/schemathesis" "$@"
