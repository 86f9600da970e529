use super::*;

fn found(document: Uuid, ordinal: u32, score: f64) -> Found {
    Found {
        document,
        name: "notes.md".into(),
        title: Some("Notes".into()),
        media_type: "text/markdown".into(),
        ordinal,
        page: Some(ordinal + 1),
        section: Some("Budget".into()),
        text: format!("chunk {ordinal}"),
        score,
    }
}

#[test]
fn fusion_ranks_a_chunk_both_searches_found_above_either_alone() {
    let doc = Uuid::new_v4();
    let vector = vec![found(doc, 1, 0.9), found(doc, 2, 0.8), found(doc, 3, 0.7)];
    let keyword = vec![found(doc, 4, 9.0), found(doc, 3, 8.0)];
    let hits = fuse(vector, keyword, 10);
    let order: Vec<u32> = hits.iter().map(|h| h.chunk.ordinal).collect();
    assert_eq!(order[0], 3, "in both lists: {order:?}");
    assert_eq!(order.len(), 4, "each chunk once");
    let top = &hits[0];
    assert_eq!(top.vector_rank, Some(3));
    assert_eq!(top.keyword_rank, Some(2));
    assert_eq!(top.similarity, Some(0.7));
    let expected = 1.0 / (RRF_K + 3.0) + 1.0 / (RRF_K + 2.0);
    assert!((top.score - expected).abs() < 1e-12);
    // Ties between the lists' firsts: both present, each with one rank.
    let firsts: Vec<&Hit> = hits.iter().filter(|h| h.chunk.ordinal != 3).collect();
    assert!(
        firsts
            .iter()
            .all(|h| h.vector_rank.is_some() != h.keyword_rank.is_some())
    );
    assert_eq!(fuse(Vec::new(), Vec::new(), 5), Vec::new());
    assert_eq!(
        fuse(vec![found(doc, 1, 0.5), found(doc, 2, 0.4)], Vec::new(), 1).len(),
        1
    );
}

#[test]
fn markers_are_the_cited_sources_in_order_of_first_citation() {
    assert_eq!(markers("Paris [2]. It is old [1][2].", 3), vec![2, 1]);
    assert_eq!(markers("See [1, 3] and [3].", 3), vec![1, 3]);
    assert_eq!(
        markers("[0] [4] [x] [] [ 2 ] [", 3),
        vec![2],
        "out of range, not numbers and unclosed are ignored"
    );
    assert!(markers("no citations", 3).is_empty());
}

#[test]
fn the_answer_prompt_numbers_the_sources_with_their_place() {
    let doc = Uuid::new_v4();
    let sources = vec![found(doc, 0, 1.0), found(doc, 4, 0.5)];
    let request = answer_request("What is the budget?", &sources);
    let prompt = request.messages[0].text();
    assert!(
        prompt.contains("[1] (Notes, page 1, Budget): chunk 0"),
        "{prompt}"
    );
    assert!(
        prompt.contains("[2] (Notes, page 5, Budget): chunk 4"),
        "{prompt}"
    );
    assert!(prompt.ends_with("Question: What is the budget?"));
    assert!(
        request
            .system
            .as_deref()
            .is_some_and(|s| s.contains(NOT_IN_SOURCES))
    );
}

#[test]
fn an_excerpt_is_cut_on_a_character_boundary() {
    let long = "é".repeat(EXCERPT_CHARS + 10);
    let cut = excerpt(&long);
    assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
    assert!(cut.ends_with('…'));
    assert_eq!(excerpt("short"), "short");
}
