//! Knowledge index benchmark: `cargo bench -p jarvis-tests --bench knowledge`. Prints
//! figures; asserts nothing.
//!
//! The corpus is the Python 3.11 documentation from Debian's `python3.11-doc`
//! (`./infra/fetch-corpus.sh`), every page read by the HTML processor and cut by the default
//! chunking rules, embedded with the local all-MiniLM-L6-v2 (`./infra/fetch-models.sh`).
//! Queries are `QUERIES` (200) chunks drawn with a fixed seed, their first 24 words. For
//! each: the 10 nearest by exact search (`vector_distance_cos` over every chunk) and by the
//! DiskANN index (`compress_neighbors=float8`, `max_neighbors=16`); recall@10 is the share
//! of the exact ten the approximate search also returns. Latencies are per query, p50 and
//! p99; sizes are the index file's with and without the DiskANN index.
//!
//! Pages are taken the library reference first (the bulk of the documentation), then the
//! rest. `CHUNKS=10000` stops at that many chunks, `PAGES=100` at that many pages, for a
//! quicker run. Vectors are cached in `.tools/corpus/vectors.f32`, so only the first run
//! over a text embeds it.

use std::time::Instant;

use jarvis_knowledge::index::{Filter, LibsqlIndex, Mode};
use jarvis_tests::corpus::{self, MODEL, USER};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

async fn timed(
    index: &LibsqlIndex,
    queries: &[Vec<f32>],
    mode: Mode,
) -> (Vec<Vec<(uuid::Uuid, u32)>>, Vec<f64>) {
    let mut results = Vec::new();
    let mut times = Vec::new();
    for query in queries {
        let started = Instant::now();
        let found = index
            .nearest_with(USER, MODEL, query, 10, &Filter::default(), mode)
            .await
            .expect("search");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        results.push(found.iter().map(|f| (f.document, f.ordinal)).collect());
    }
    times.sort_by(f64::total_cmp);
    (results, times)
}

#[tokio::main]
async fn main() {
    let Some(root) = corpus::html_root() else {
        return;
    };
    let Some(local) = corpus::embedder() else {
        return;
    };
    let mut pages = corpus::pages(&root);
    pages.sort_by_key(|p| !p.starts_with("library/"));
    pages.truncate(setting("PAGES", usize::MAX));
    let started = Instant::now();
    let mut pieces = corpus::pieces(&root, &pages, Some(setting("CHUNKS", usize::MAX)));
    pieces.truncate(setting("CHUNKS", usize::MAX));
    println!(
        "corpus: {} chunks of the Python 3.11 documentation (read and cut in {:.1} s)",
        pieces.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let vectors = corpus::embed(&local, &corpus::embedded_texts(&pieces)).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "embedded: {} chunks in {seconds:.0} s ({:.0} chunks/s, vectors cached by an earlier run included)",
        pieces.len(),
        pieces.len() as f64 / seconds
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let index = corpus::index(dir.path(), &pieces, &vectors, u64::MAX).await;
    println!(
        "indexed: {:.1} s; file {:.1} MB without the DiskANN index",
        started.elapsed().as_secs_f64(),
        index.stats(USER).await.expect("stats").bytes as f64 / 1e6
    );

    let mut rng = fastrand::Rng::with_seed(7);
    let count = setting("QUERIES", 200);
    let queries: Vec<String> = (0..count)
        .map(|_| {
            let piece = &pieces[rng.usize(..pieces.len())];
            piece
                .text
                .split_whitespace()
                .take(24)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let query_vectors = corpus::embed(&local, &queries).await;

    let (exact, exact_ms) = timed(&index, &query_vectors, Mode::Exact).await;
    let started = Instant::now();
    index.build_approximate(USER).await.expect("built");
    let build = started.elapsed().as_secs_f64();
    let (approximate, approximate_ms) = timed(&index, &query_vectors, Mode::Approximate).await;
    let stats = index.stats(USER).await.expect("stats");
    let (mut hits, mut wanted) = (0usize, 0usize);
    for (truth, got) in exact.iter().zip(&approximate) {
        hits += got.iter().filter(|g| truth.contains(g)).count();
        wanted += truth.len();
    }
    println!(
        "DiskANN index built in {build:.1} s; file {:.1} MB with it",
        stats.bytes as f64 / 1e6
    );
    println!(
        "exact search:       p50 {:.2} ms, p99 {:.2} ms",
        percentile(&exact_ms, 0.5),
        percentile(&exact_ms, 0.99)
    );
    println!(
        "approximate search: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&approximate_ms, 0.5),
        percentile(&approximate_ms, 0.99)
    );
    println!(
        "recall@10 of the approximate index against exact search: {:.3} ({hits} of {wanted}, {count} queries)",
        hits as f64 / wanted as f64
    );
}
