//! The trading tests' market data: the daily prices of AAPL, MSFT, IBM (2000-03-01 to
//! 2013-03-01), GOOG (from 2004-08-19) and FB, public-domain Quandl WIKI data as the
//! BSD-licensed PyPI package `bokeh-sampledata` ships them (`infra/fetch-market-data.sh`
//! puts `stocks.csv.gz` in `.tools/market`).

use std::path::PathBuf;

use crate::workspace_root;

/// The path of `stocks.csv.gz`, or `None` when it is missing: a test then says so and
/// passes, unless `JARVIS_TEST_MARKET=required` (set by `infra/test.sh`) where it fails.
pub fn stocks_csv() -> Option<PathBuf> {
    let file = std::env::var_os("JARVIS_MARKET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/market"))
        .join("stocks.csv.gz");
    if file.is_file() {
        return Some(file);
    }
    assert_ne!(
        std::env::var("JARVIS_TEST_MARKET").as_deref(),
        Ok("required"),
        "the market data is required and missing: {}",
        file.display()
    );
    eprintln!(
        "the market data is missing ({}): run ./infra/fetch-market-data.sh",
        file.display()
    );
    None
}
