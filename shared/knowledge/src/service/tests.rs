use super::*;

fn found(document: Uuid, ordinal: u32, score: f64) -> Found {
    in_section(document, ordinal, score, "Budget")
}

/// A chunk of `document` under the heading `section`.
fn in_section(document: Uuid, ordinal: u32, score: f64, section: &str) -> Found {
    Found {
        document,
        name: "notes.md".into(),
        title: Some("Notes".into()),
        media_type: "text/markdown".into(),
        ordinal,
        page: Some(ordinal + 1),
        section: Some(section.into()),
        text: format!("chunk {ordinal}"),
        score,
    }
}

#[test]
fn fusion_ranks_a_chunk_both_searches_found_above_either_alone() {
    let doc = Uuid::new_v4();
    let chunk = |ordinal, score| in_section(doc, ordinal, score, &format!("Part {ordinal}"));
    let vector = vec![chunk(1, 0.9), chunk(2, 0.8), chunk(3, 0.7)];
    let keyword = vec![chunk(4, 9.0), chunk(3, 8.0)];
    let hits = fuse(vector, keyword, 10);
    let order: Vec<u32> = hits.iter().map(|h| h.chunk.ordinal).collect();
    assert_eq!(order[0], 3, "in both lists: {order:?}");
    assert_eq!(order.len(), 4, "each chunk once");
    let top = &hits[0];
    assert_eq!(top.vector_rank, Some(3));
    assert_eq!(top.keyword_rank, Some(2));
    assert_eq!(top.similarity, Some(0.7));
    let expected = 1.0 / (RRF_K + 3.0) + KEYWORD_WEIGHT / (RRF_K + 2.0);
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
        fuse(vec![chunk(1, 0.5), chunk(2, 0.4)], Vec::new(), 1).len(),
        1
    );
}

#[test]
fn fusion_puts_the_vector_list_first_above_the_keyword_list_first() {
    let doc = Uuid::new_v4();
    let hits = fuse(
        vec![in_section(doc, 1, 0.9, "Income")],
        vec![in_section(doc, 2, 9.0, "Spending")],
        10,
    );
    let order: Vec<u32> = hits.iter().map(|h| h.chunk.ordinal).collect();
    assert_eq!(order, vec![1, 2]);
    assert!((hits[1].score - KEYWORD_WEIGHT / (RRF_K + 1.0)).abs() < 1e-12);
}

#[test]
fn chunks_of_one_section_are_one_hit_shown_from_where_the_section_begins() {
    let doc = Uuid::new_v4();
    let other = Uuid::new_v4();
    // The section's second chunk leads the vector list; its first is keyword-ranked only.
    let vector = vec![
        in_section(doc, 8, 0.9, "re.sub"),
        in_section(doc, 3, 0.8, "re.split"),
        in_section(other, 8, 0.7, "re.sub"),
    ];
    let keyword = vec![
        in_section(doc, 3, 9.0, "re.split"),
        in_section(doc, 7, 8.0, "re.sub"),
    ];
    let hits = fuse(vector, keyword, 10);
    let shown: Vec<(Uuid, u32)> = hits
        .iter()
        .map(|h| (h.chunk.document, h.chunk.ordinal))
        .collect();
    assert_eq!(shown, vec![(doc, 3), (doc, 7), (other, 8)], "{hits:#?}");
    let sub = &hits[1];
    assert_eq!(sub.vector_rank, Some(1), "the section's best vector rank");
    assert_eq!(sub.keyword_rank, Some(2));
    assert_eq!(sub.similarity, Some(0.9));
    assert!(
        (sub.score - 1.0 / (RRF_K + 1.0)).abs() < 1e-12,
        "its best chunk's score"
    );
    // Chunks without headings stay apart.
    let loose = |ordinal| Found {
        section: None,
        ..found(doc, ordinal, 0.5)
    };
    assert_eq!(fuse(vec![loose(1), loose(2)], Vec::new(), 10).len(), 2);
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
