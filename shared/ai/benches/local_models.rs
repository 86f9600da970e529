//! Throughput of the local models on this machine's CPU:
//! `cargo bench -p jarvis-ai --bench local_models` (after `./infra/fetch-models.sh`).
//!
//! - the embedder: sentences per second, in batches of 32 short sentences (8–14 tokens, as
//!   notes and chat turns are) and of 32 paragraphs of about 120 tokens (as knowledge chunks);
//! - the chat model: prompt tokens per second (reading the prompt) and generated tokens per
//!   second (greedy decoding, one token per step), over a 128-token reply.
//!
//! Each figure is the median of 5 runs after one warm-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jarvis_ai::local::{CHAT_MODEL, Local};
use jarvis_ai::{ChatRequest, Event, Message, Provider};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let dir = std::env::var_os("JARVIS_AI_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/models"));
    let local = match Local::discover(&dir) {
        Ok(Some(local)) if local.has_chat() && local.has_embedder() => local,
        _ => {
            eprintln!(
                "local models missing from {}: run ./infra/fetch-models.sh",
                dir.display()
            );
            return;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("local models, {threads} threads");

    let short: Vec<String> = (0..32)
        .map(|i| format!("Remind me to call the plumber about the kitchen sink, item {i}."))
        .collect();
    let paragraph = "Jarvis keeps notes, links and documents in an archive that syncs between \
                     devices, merges concurrent edits without losing either side, and answers \
                     questions about them with citations to the passages it used. ";
    let long: Vec<String> = (0..32)
        .map(|i| format!("{i}. {}", paragraph.repeat(3)))
        .collect();
    for (name, texts) in [
        ("short sentences", &short),
        ("~120-token paragraphs", &long),
    ] {
        let mut rates = Vec::new();
        for run in 0..6 {
            let start = Instant::now();
            runtime.block_on(local.embed(texts)).expect("embed");
            let secs = start.elapsed().as_secs_f64();
            if run > 0 {
                rates.push(texts.len() as f64 / secs);
            }
        }
        println!("embedder, {name}: {:.0} sentences/s", median(rates));
    }

    let request = ChatRequest {
        model: CHAT_MODEL.into(),
        messages: vec![Message::user(
            "Write a long story about a lighthouse keeper who finds a message in a bottle.",
        )],
        max_output_tokens: Some(128),
        ..ChatRequest::default()
    };
    let mut prompt_rates = Vec::new();
    let mut decode_rates = Vec::new();
    for run in 0..6 {
        let (first, total, usage) = runtime.block_on(async {
            let start = Instant::now();
            let mut events = local.stream(request.clone()).await.expect("stream");
            let mut first = None;
            let mut usage = None;
            while let Some(event) = events.next().await {
                match event {
                    Event::TextDelta { .. } if first.is_none() => first = Some(start.elapsed()),
                    Event::Usage(u) => usage = Some(u),
                    _ => {}
                }
            }
            (
                first.unwrap_or_default(),
                start.elapsed(),
                usage.unwrap_or_default(),
            )
        });
        if run > 0 {
            let decode = total.saturating_sub(first).max(Duration::from_micros(1));
            prompt_rates.push(usage.input_tokens as f64 / first.as_secs_f64());
            decode_rates.push(usage.output_tokens.saturating_sub(1) as f64 / decode.as_secs_f64());
        }
    }
    println!("chat model, prompt: {:.0} tokens/s", median(prompt_rates));
    println!(
        "chat model, generation: {:.1} tokens/s",
        median(decode_rates)
    );
}
