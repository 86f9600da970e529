#!/usr/bin/env bash
# Cold starts of every function's release bootstrap, started the way Lambda starts it (a
# Runtime API emulator, the sandbox's environment, an API Gateway HTTP API event), beside a
# hello-world lambda_http + axum function built with the same profile (the floor). Two runs:
#
#   1. bootstraps built with the embedded store (`--features libsql`): init (process start to
#      the first GET /runtime/invocation/next), first invocation, warm p50/p99, peak RSS,
#      size; the median of COLD_STARTS cold starts, each on an empty data directory;
#   2. the Lambda builds (DynamoDB, Secrets Manager) with every AWS endpoint on a closed
#      port: init must still succeed, since it does no network I/O.
#
# Prints the tables; fails only when a bootstrap cannot start.
#
#   ./infra/bench-coldstart.sh       # INVOCATIONS=1000 COLD_STARTS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."

INVOCATIONS="${INVOCATIONS:-1000}"
COLD_STARTS="${COLD_STARTS:-5}"
FUNCTIONS=(system crdt archive sync auth)
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
mkdir -p "$OUT/lambda" "$OUT/embedded"

# One function per build, so no feature of another function is unified into it.
for f in "${FUNCTIONS[@]}"; do
  echo "building $f (Lambda, then embedded store)" >&2
  cargo build --release --quiet -p "jarvis-fn-$f"
  cp "$TARGET/release/$f" "$OUT/lambda/$f"
  # `--features libsql`, not `jarvis-fn-auth/libsql`: auth dev-depends on itself, and that
  # spelling would name the dependency's feature.
  cargo build --release --quiet -p "jarvis-fn-$f" --features libsql
  cp "$TARGET/release/$f" "$OUT/embedded/$f"
done
cargo build --release --quiet -p jarvis-coldstart

ARGS=(--floor "$TARGET/release/floor" --invocations "$INVOCATIONS" --cold-starts "$COLD_STARTS")
for f in "${FUNCTIONS[@]}"; do
  ARGS+=(--embedded "$f=$OUT/embedded/$f" --closed-port "$f=$OUT/lambda/$f")
done
echo "machine: $(nproc) cores, $(uname -m), $(rustc --version)"
"$TARGET/release/coldstart" "${ARGS[@]}"
