#!/usr/bin/env bash
# Runs every Jarvis check: formatting, lints, all Rust tests (unit, property, in-process HTTP,
# end to end against the real jarvis-local binary) and cfn-lint on template.yaml.
#
# Installs what the tests need into .tools/ (ignored by git), starts any local stand-ins on
# loopback, stops them on exit, and exits non-zero when anything fails.
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

step "cfn-lint template.yaml"
"$TOOLS/venv/bin/cfn-lint" template.yaml

echo
echo "rust: $passed passed, $failed failed"
