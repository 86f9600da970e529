#!/usr/bin/env bash
# Fetches the trading function's historical prices once into .tools/market (or
# $JARVIS_MARKET_DIR): stocks.csv.gz, the daily prices of AAPL, MSFT, IBM, GOOG and FB from the
# public-domain Quandl WIKI data set, as shipped in the BSD-licensed PyPI package
# bokeh-sampledata (pinned by hash in infra/market.txt). Exits non-zero, with the reason, when it
# cannot be fetched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MARKET="${JARVIS_MARKET_DIR:-$ROOT/.tools/market}"

if [ -f "$MARKET/stocks.csv.gz" ]; then
  exit 0
fi

DOWNLOADS="$MARKET/.downloads"
mkdir -p "$DOWNLOADS"
echo "Fetching the historical prices (bokeh-sampledata, 12 MB, once) into $MARKET"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  --only-binary bokeh-sampledata -r "$ROOT/infra/market.txt" -d "$DOWNLOADS"

python3 - "$DOWNLOADS" "$MARKET" <<'PY'
import pathlib, sys, zipfile

downloads, market = (pathlib.Path(p) for p in sys.argv[1:3])
wheel = next(downloads.glob("bokeh_sampledata-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    part = market / "stocks.csv.gz.part"
    part.write_bytes(archive.read("bokeh_sampledata/_data/stocks.csv.gz"))
    part.rename(market / "stocks.csv.gz")
PY
rm -rf "$DOWNLOADS"
echo "Historical prices ready in $MARKET/stocks.csv.gz"
