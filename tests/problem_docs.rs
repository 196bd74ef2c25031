//! Every problem type the filter can emit has its page in docs/problems/, and
//! every page there belongs to one: the `type` URI must explain itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cnf_guard::reply::problem::ProblemKind;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/problems")
}

#[test]
fn every_slug_has_a_page_and_every_page_a_slug() {
    let slugs: BTreeSet<String> = ProblemKind::ALL
        .iter()
        .map(|kind| kind.slug().to_owned())
        .collect();
    let pages: BTreeSet<String> = std::fs::read_dir(docs_dir())
        .expect("docs/problems/")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .map(|name| match name.strip_suffix(".md") {
            Some(slug) => slug.to_owned(),
            None => panic!("docs/problems/{name} is not a <slug>.md page"),
        })
        .collect();
    let missing: Vec<_> = slugs.difference(&pages).collect();
    let orphaned: Vec<_> = pages.difference(&slugs).collect();
    assert!(missing.is_empty(), "slugs without a page: {missing:?}");
    assert!(orphaned.is_empty(), "pages without a slug: {orphaned:?}");
}

#[test]
fn every_page_has_the_same_sections() {
    for kind in ProblemKind::ALL {
        let page =
            std::fs::read_to_string(docs_dir().join(format!("{}.md", kind.slug()))).expect("page");
        let heading = format!("# {}: {}\n", kind.slug(), kind.title());
        assert!(
            page.starts_with(&heading),
            "{}: starts with {heading:?}",
            kind.slug()
        );
        for section in [
            "## What it means",
            "## When it occurs",
            "## Example response",
            "## Common scenarios",
            "## Resolution",
            "## How to debug",
        ] {
            assert!(page.contains(section), "{}: no {section:?}", kind.slug());
        }
        assert!(
            page.contains(&format!(
                "\"type\":\"https://docs.example.com/problems/{}\"",
                kind.slug()
            )),
            "{}: the example response shows its own type",
            kind.slug()
        );
        assert!(
            page.contains(&format!("\"title\":\"{}\"", kind.title())),
            "{}: the example response shows the title",
            kind.slug()
        );
    }
}
