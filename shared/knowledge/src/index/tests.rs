use super::*;

const MODEL: &str = "local:test-embedder";

fn source(document: Uuid, name: &str, media_type: &str, tags: &[&str]) -> Source {
    Source {
        document,
        name: name.to_owned(),
        title: Some(format!("The {name}")),
        media_type: media_type.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn entry(ordinal: u32, text: &str, vector: Vec<f32>) -> Entry {
    Entry {
        ordinal,
        page: Some(ordinal + 1),
        section: Some("Intro › Part".to_owned()),
        text: text.to_owned(),
        vector,
    }
}

/// A deterministic pseudo-random unit vector.
fn random_unit(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let v: Vec<f32> = (0..dimensions).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 4];
    v[i] = 1.0;
    v
}

async fn two_documents(index: &LibsqlIndex) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    index
        .begin("u1", &source(a, "a.md", "text/markdown", &["work"]))
        .await
        .expect("begin a");
    index
        .add(
            "u1",
            MODEL,
            a,
            &[
                entry(0, "the quarterly budget review", axis(0)),
                entry(1, "notes about sailing boats", axis(1)),
            ],
        )
        .await
        .expect("add a");
    index
        .begin("u1", &source(b, "b.pdf", "application/pdf", &["home"]))
        .await
        .expect("begin b");
    index
        .add(
            "u1",
            MODEL,
            b,
            &[entry(
                0,
                "a recipe for lentil soup with budget ingredients",
                axis(2),
            )],
        )
        .await
        .expect("add b");
    (a, b)
}

#[tokio::test]
async fn exact_search_returns_the_nearest_chunks_with_their_source_and_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let (a, _) = two_documents(&index).await;
    let query = vec![0.9, 0.1, 0.0, 0.0];
    let found = index
        .nearest("u1", MODEL, &query, 2, &Filter::default())
        .await
        .expect("search");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].document, a);
    assert_eq!(found[0].text, "the quarterly budget review");
    assert_eq!(found[0].name, "a.md");
    assert_eq!(found[0].title.as_deref(), Some("The a.md"));
    assert_eq!(found[0].page, Some(1));
    assert_eq!(found[0].section.as_deref(), Some("Intro › Part"));
    assert!(found[0].score > found[1].score, "{found:?}");
    assert!((found[0].score - 0.9 / (0.82f64).sqrt()).abs() < 1e-4);
}

#[tokio::test]
async fn filters_limit_a_search_to_a_document_a_tag_or_a_media_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let (a, b) = two_documents(&index).await;
    let query = axis(0);
    let only = |filter: Filter| {
        let index = &index;
        let query = query.clone();
        async move {
            let found = index
                .nearest("u1", MODEL, &query, 10, &filter)
                .await
                .expect("search");
            let mut docs: Vec<Uuid> = found.iter().map(|f| f.document).collect();
            docs.dedup();
            docs
        }
    };
    let by_doc = Filter {
        document: Some(b),
        ..Filter::default()
    };
    assert_eq!(only(by_doc).await, vec![b]);
    let by_tag = Filter {
        tag: Some("work".into()),
        ..Filter::default()
    };
    assert_eq!(only(by_tag).await, vec![a]);
    let by_type = Filter {
        media_type: Some("application/pdf".into()),
        ..Filter::default()
    };
    assert_eq!(only(by_type).await, vec![b]);
    let nothing = Filter {
        tag: Some("absent".into()),
        ..Filter::default()
    };
    assert!(only(nothing).await.is_empty());
}

#[tokio::test]
async fn keyword_search_ranks_by_bm25_and_treats_every_word_as_a_word() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let (a, b) = two_documents(&index).await;
    let found = index
        .matching("u1", "budget review", 10, &Filter::default())
        .await
        .expect("search");
    let docs: Vec<Uuid> = found.iter().map(|f| f.document).collect();
    assert_eq!(docs, vec![a, b], "both words beat one: {found:?}");
    // Stemming: "boat" finds "boats".
    let found = index
        .matching("u1", "boat", 10, &Filter::default())
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text, "notes about sailing boats");
    // FTS5 syntax in a query is taken as words, never as operators or an error.
    for hostile in [
        "NOT budget",
        "\"budget",
        "budget*",
        "text:budget",
        "NEAR(a b)",
        "*",
        "",
    ] {
        index
            .matching("u1", hostile, 10, &Filter::default())
            .await
            .unwrap_or_else(|e| panic!("{hostile:?}: {e}"));
    }
    let tagged = index
        .matching(
            "u1",
            "budget",
            10,
            &Filter {
                tag: Some("home".into()),
                ..Filter::default()
            },
        )
        .await
        .expect("search");
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].document, b);
}

#[tokio::test]
async fn reading_a_document_again_replaces_its_chunks_and_removing_it_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let (a, b) = two_documents(&index).await;
    index
        .begin("u1", &source(a, "a.md", "text/markdown", &[]))
        .await
        .expect("begin again");
    index
        .add("u1", MODEL, a, &[entry(0, "a single new chunk", axis(3))])
        .await
        .expect("add again");
    assert_eq!(index.stats("u1").await.expect("stats").chunks, 2);
    assert!(
        index
            .matching("u1", "sailing", 10, &Filter::default())
            .await
            .expect("search")
            .is_empty(),
        "the old chunks' words are gone from the keyword index"
    );
    index.remove("u1", a).await.expect("remove");
    index.remove("u1", b).await.expect("remove");
    let stats = index.stats("u1").await.expect("stats");
    assert_eq!(stats.chunks, 0);
    assert!(
        index
            .matching("u1", "budget chunk soup", 10, &Filter::default())
            .await
            .expect("search")
            .is_empty()
    );
    assert!(
        index
            .nearest("u1", MODEL, &axis(0), 10, &Filter::default())
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn each_user_has_a_file_of_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    two_documents(&index).await;
    assert!(
        index
            .matching("u2", "budget", 10, &Filter::default())
            .await
            .expect("search")
            .is_empty()
    );
    assert!(dir.path().join("u1.db").exists());
    for bad in ["../u1", "u1/x", "", "a b"] {
        assert!(
            matches!(index.stats(bad).await, Err(IndexError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn vectors_of_another_model_or_length_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let (a, _) = two_documents(&index).await;
    let err = index
        .add("u1", "openai:other", a, &[entry(5, "x", axis(0))])
        .await
        .expect_err("another model");
    assert!(matches!(err, IndexError::ModelChanged { .. }), "{err}");
    let err = index
        .nearest("u1", "openai:other", &axis(0), 3, &Filter::default())
        .await
        .expect_err("another model");
    assert!(matches!(err, IndexError::ModelChanged { .. }), "{err}");
    let err = index
        .add("u1", MODEL, a, &[entry(5, "x", vec![1.0; 8])])
        .await
        .expect_err("another length");
    assert!(matches!(err, IndexError::Invalid(_)), "{err}");
    let err = index
        .add(
            "u1",
            MODEL,
            a,
            &[entry(5, "x", vec![f32::NAN, 0.0, 0.0, 0.0])],
        )
        .await
        .expect_err("not finite");
    assert!(matches!(err, IndexError::Invalid(_)), "{err}");
    assert_eq!(index.stats("u1").await.expect("stats").chunks, 3);
}

#[tokio::test]
async fn past_the_configured_size_the_approximate_index_is_built_and_agrees_with_exact_search() {
    const DIMENSIONS: usize = 48;
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 600);
    let document = Uuid::new_v4();
    index
        .begin("u1", &source(document, "random", "text/plain", &[]))
        .await
        .expect("begin");
    let entries: Vec<Entry> = (0..1_000u32)
        .map(|i| {
            entry(
                i,
                &format!("chunk {i}"),
                random_unit(u64::from(i), DIMENSIONS),
            )
        })
        .collect();
    for batch in entries.chunks(100) {
        index.add("u1", MODEL, document, batch).await.expect("add");
    }
    let stats = index.stats("u1").await.expect("stats");
    assert_eq!(stats.chunks, 1_000);
    assert!(stats.approximate, "built past 600 chunks");
    let (mut hits, mut wanted) = (0usize, 0usize);
    for q in 0..50u64 {
        let query = random_unit(10_000 + q, DIMENSIONS);
        let filter = Filter::default();
        let exact = index
            .nearest_with("u1", MODEL, &query, 10, &filter, Mode::Exact)
            .await
            .expect("exact");
        let approximate = index
            .nearest_with("u1", MODEL, &query, 10, &filter, Mode::Approximate)
            .await
            .expect("approximate");
        let truth: Vec<u32> = exact.iter().map(|f| f.ordinal).collect();
        hits += approximate
            .iter()
            .filter(|f| truth.contains(&f.ordinal))
            .count();
        wanted += truth.len();
    }
    let recall = hits as f64 / wanted as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[tokio::test]
async fn the_index_file_layout_matches_its_golden_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1);
    two_documents(&index).await;
    let file = index.file("u1").await.expect("file");
    let conn = file.conn.lock().await;
    let rows = rows_of(
        &conn,
        "SELECT type, name, sql FROM sqlite_master
         WHERE sql IS NOT NULL AND name NOT LIKE 'chunks_fts_%' AND name NOT LIKE 'chunks_ann_%'
         AND name NOT LIKE 'libsql_%'
         ORDER BY type, name",
        Vec::new(),
    )
    .await
    .expect("schema");
    let schema: String = rows
        .iter()
        .map(|row| {
            let sql = text_of(row.get(2)).expect("sql");
            let sql: Vec<&str> = sql.split_whitespace().collect();
            format!("{};\n", sql.join(" "))
        })
        .collect();
    let golden = include_str!("../../tests/golden/index-schema.sql");
    assert_eq!(schema, golden);
    let meta = rows_of(
        &conn,
        "SELECT name, value FROM meta ORDER BY name",
        Vec::new(),
    )
    .await
    .expect("meta");
    let meta: Vec<(String, String)> = meta
        .iter()
        .map(|r| {
            (
                text_of(r.first()).expect("name"),
                text_of(r.get(1)).expect("value"),
            )
        })
        .collect();
    assert_eq!(
        meta,
        vec![
            ("dimensions".to_owned(), "4".to_owned()),
            ("model".to_owned(), MODEL.to_owned())
        ]
    );
}

#[test]
fn a_keyword_query_quotes_each_word_and_drops_punctuation() {
    assert_eq!(
        keyword_query("Budget: \"review\" NOT x*").as_deref(),
        Some("\"budget\" OR \"review\" OR \"not\" OR \"x\"")
    );
    assert_eq!(
        keyword_query("What is the heron's bill for?").as_deref(),
        Some("\"heron\" OR \"s\" OR \"bill\""),
        "common words are left out"
    );
    assert_eq!(
        keyword_query("what is it").as_deref(),
        Some("\"what\" OR \"is\" OR \"it\""),
        "unless nothing else is left"
    );
    assert_eq!(keyword_query("  -- ** "), None);
    let long = "w ".repeat(100);
    assert_eq!(
        keyword_query(&long).map(|q| q.matches("OR").count()),
        Some(MAX_QUERY_WORDS - 1)
    );
}

#[tokio::test]
async fn bm25_outside_sqlite_scores_a_corpus_as_fts5_does() {
    use crate::keywords::{Corpus, Occurrence, counts, query_terms, rank};
    // Words the Porter and Snowball stemmers agree on, so both sides see the same terms.
    let texts = [
        "kettle water kettle boil",
        "water for the garden and the lawn",
        "a kettle on the stove",
        "garden tools: spade, rake, hoe and more tools",
        "boil water for tea in a kettle or a pot",
        "lawn mower manual",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let index = LibsqlIndex::new(dir.path(), 1_000);
    let document = Uuid::new_v4();
    index
        .begin("u1", &source(document, "home.txt", "text/plain", &[]))
        .await
        .expect("begin");
    let entries: Vec<Entry> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Entry {
            ordinal: i as u32,
            page: None,
            section: Some("House notes".into()),
            text: (*text).to_owned(),
            vector: axis(i % 4),
        })
        .collect();
    index
        .add("u1", MODEL, document, &entries)
        .await
        .expect("add");

    let counted: Vec<_> = entries
        .iter()
        .map(|e| counts(&e.text, e.section.as_deref()))
        .collect();
    let corpus = Corpus {
        chunks: counted.len() as u64,
        terms: counted.iter().map(|c| u64::from(c.length)).sum(),
    };
    for query in ["kettle", "boil water", "garden tools", "lawn kettle house"] {
        let hits: Vec<Vec<Occurrence<u32>>> = query_terms(query)
            .iter()
            .map(|term| {
                counted
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        Some(Occurrence {
                            chunk: i as u32,
                            frequency: *c.frequencies.get(term)?,
                            length: c.length,
                            wanted: true,
                        })
                    })
                    .collect()
            })
            .collect();
        let ours = rank(corpus, &hits, 10);
        let theirs = index
            .matching("u1", query, 10, &Filter::default())
            .await
            .expect("search");
        assert_eq!(ours.len(), theirs.len(), "{query}");
        for (o, t) in ours.iter().zip(&theirs) {
            assert!(
                (o.1 - t.score).abs() < 1e-9,
                "{query}: {} scored {} here and {} by FTS5 (chunk {})",
                o.0,
                o.1,
                t.score,
                t.ordinal
            );
        }
        let mut a: Vec<u32> = ours.iter().map(|o| o.0).collect();
        let mut b: Vec<u32> = theirs.iter().map(|t| t.ordinal).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "{query}");
    }
}

/// The chat and knowledge services each keep their own index over the same directory:
/// opening a user's file for the first time from both at once (the schema and the switch to
/// WAL both take the write lock) waits rather than failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_indexes_opening_a_new_users_file_at_once_both_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..20 {
        let user = format!("u{round}");
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let index = LibsqlIndex::new(dir.path(), 1_000);
                let user = user.clone();
                tokio::spawn(async move {
                    index
                        .matching(&user, "kettle", 5, &Filter::default())
                        .await
                        .map(|found| found.len())
                })
            })
            .collect();
        for open in opens {
            assert_eq!(
                open.await.expect("task").expect("opened"),
                0,
                "round {round}"
            );
        }
    }
}
