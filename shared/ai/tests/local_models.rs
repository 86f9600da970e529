//! The local models, run for real from their files: the embedder against values computed
//! once with the reference implementation, and the chat model answering a prompt.
//!
//! The files come from `infra/fetch-models.sh` (which `infra/test.sh` runs) into
//! `.tools/models`, or from `JARVIS_AI_LOCAL_DIR`. Without them these tests say so and pass,
//! unless `JARVIS_TEST_LOCAL_MODELS=required` (set by `infra/test.sh`), where they fail.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use jarvis_ai::local::{CHAT_MODEL, Local};
use jarvis_ai::{ChatRequest, Event, Message, Provider, StopReason, collect};

fn models() -> Option<Arc<Local>> {
    static LOADED: OnceLock<Option<Arc<Local>>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = std::env::var_os("JARVIS_AI_LOCAL_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/models")
                });
            let local = Local::discover(&dir).expect("model files that exist load");
            let complete = local
                .as_ref()
                .is_some_and(|l| l.has_chat() && l.has_embedder());
            if !complete {
                assert_ne!(
                    std::env::var("JARVIS_TEST_LOCAL_MODELS").as_deref(),
                    Ok("required"),
                    "the local models are required and missing from {}",
                    dir.display()
                );
                eprintln!(
                    "local models missing from {}: run ./infra/fetch-models.sh",
                    dir.display()
                );
                return None;
            }
            local.map(Arc::new)
        })
        .clone()
}

/// The sentences of the reference run. The last is 198 tokens long: the released tokenizer
/// would cut it at 128, sentence-transformers reads 256.
fn sentences() -> Vec<String> {
    let long = [
        vec!["The cat sleeps in the sun by the window."; 10],
        vec!["Share prices collapsed and investors sold their bonds in a panic."; 8],
    ]
    .concat()
    .join(" ");
    [
        "The cat sits on the mat.",
        "A cat is resting on a rug.",
        "Stock markets fell sharply after the announcement.",
        "Remind me to buy milk tomorrow morning.",
        "Don't forget: milk, tomorrow at 8am.",
        "Quantum entanglement links the states of two particles.",
        &long,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Cosine similarities of [`sentences`], computed once with sentence-transformers 6.2.0
/// (`SentenceTransformer(path).encode(sentences, normalize_embeddings=True)`, CPU, torch
/// 2.15) from the same model files, rounded to 4 places.
const REFERENCE: [[f32; 7]; 7] = [
    [1.0, 0.7224, 0.0275, -0.0055, -0.0054, -0.0223, 0.2323],
    [0.7224, 1.0, 0.0078, 0.0334, 0.0048, 0.0351, 0.261],
    [0.0275, 0.0078, 1.0, 0.075, 0.0308, 0.0412, 0.3461],
    [-0.0055, 0.0334, 0.075, 1.0, 0.7324, 0.0648, 0.1172],
    [-0.0054, 0.0048, 0.0308, 0.7324, 1.0, 0.0432, 0.1045],
    [-0.0223, 0.0351, 0.0412, 0.0648, 0.0432, 1.0, 0.1072],
    [0.2323, 0.261, 0.3461, 0.1172, 0.1045, 0.1072, 1.0],
];

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn the_embedder_matches_the_reference_within_a_hundredth() {
    let Some(local) = models() else { return };
    let vectors = local.embed(&sentences()).await.expect("embeddings");
    assert_eq!(vectors.len(), 7);
    for v in &vectors {
        assert_eq!(v.len(), 384);
        assert!((dot(v, v) - 1.0).abs() < 1e-4, "unit length");
    }
    for (i, row) in REFERENCE.iter().enumerate() {
        for (j, expected) in row.iter().enumerate() {
            let got = dot(&vectors[i], &vectors[j]);
            assert!(
                (got - expected).abs() <= 0.01,
                "similarity of sentences {i} and {j}: {got:.4}, reference {expected}"
            );
        }
    }
}

#[tokio::test]
async fn an_embedding_does_not_depend_on_its_batch() {
    let Some(local) = models() else { return };
    let alone = local
        .embed(&["The cat sits on the mat.".to_owned()])
        .await
        .expect("one");
    let batched = local.embed(&sentences()).await.expect("batch");
    assert!(
        dot(&alone[0], &batched[0]) > 0.9999,
        "padding to the batch's longest changes nothing"
    );
}

#[tokio::test]
async fn vectors_come_back_in_the_order_of_the_texts_though_batched_by_length() {
    let Some(local) = models() else { return };
    // More texts than one batch holds, their lengths out of order.
    let topics = [
        "the garden",
        "income taxes",
        "a violin",
        "rockets",
        "sourdough bread",
        "the tides",
        "chess openings",
        "bicycle repair",
    ];
    let texts: Vec<String> = (0..40)
        .map(|i| format!("Note {i} about {}. ", topics[i % topics.len()]).repeat((i * 7) % 5 + 1))
        .collect();
    let together = local.embed(&texts).await.expect("together");
    assert_eq!(together.len(), texts.len());
    for i in [0, 3, 17, 39] {
        let alone = local.embed(&texts[i..=i]).await.expect("alone");
        assert!(
            dot(&alone[0], &together[i]) > 0.9999,
            "text {i} got another text's vector"
        );
    }
}

#[tokio::test]
async fn the_chat_model_answers_a_prompt_with_coherent_text() {
    let Some(local) = models() else { return };
    let request = ChatRequest {
        model: CHAT_MODEL.into(),
        messages: vec![Message::user("What is the capital of France?")],
        max_output_tokens: Some(40),
        ..ChatRequest::default()
    };
    let reply = collect(local.stream(request).await.expect("stream"))
        .await
        .expect("reply");
    assert!(
        reply.text.contains("Paris"),
        "a coherent answer names Paris: {:?}",
        reply.text
    );
    assert!(
        reply.usage.input_tokens > 10,
        "the template and the question"
    );
    assert!(reply.usage.output_tokens > 0 && reply.usage.output_tokens <= 40);
    assert!(matches!(
        reply.stop_reason,
        StopReason::EndTurn | StopReason::MaxTokens
    ));
}

#[tokio::test]
async fn the_chat_model_streams_and_stops_at_its_budget_and_stop_sequences() {
    let Some(local) = models() else { return };
    let request = ChatRequest {
        model: CHAT_MODEL.into(),
        messages: vec![Message::user(
            "Count from one to twenty, in words, separated by commas.",
        )],
        max_output_tokens: Some(8),
        ..ChatRequest::default()
    };
    let mut deltas = 0;
    let mut events = local.stream(request.clone()).await.expect("stream");
    let mut last = None;
    while let Some(event) = futures_util::StreamExt::next(&mut events).await {
        if matches!(event, Event::TextDelta { .. }) {
            deltas += 1;
        }
        last = Some(event);
    }
    assert!(deltas > 1, "text arrives token by token");
    assert_eq!(
        last,
        Some(Event::Done {
            stop_reason: StopReason::MaxTokens
        })
    );

    let stopped = collect(
        local
            .stream(ChatRequest {
                max_output_tokens: Some(60),
                stop: vec![",".into()],
                ..request
            })
            .await
            .expect("stream"),
    )
    .await
    .expect("reply");
    assert_eq!(stopped.stop_reason, StopReason::StopSequence);
    assert!(!stopped.text.contains(','), "{:?}", stopped.text);
}

#[tokio::test]
async fn the_local_provider_refuses_other_models_by_name() {
    let Some(local) = models() else { return };
    let refused = local
        .stream(ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![Message::user("hi")],
            ..ChatRequest::default()
        })
        .await;
    assert!(matches!(
        refused,
        Err(jarvis_ai::ProviderError::Refused { status: 404, .. })
    ));
}
