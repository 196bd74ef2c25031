//! Every relative link in the repository's Markdown files resolves: the file
//! it names exists, and its `#anchor`, if any, names a heading (by GitHub's
//! slug rules) or an explicit `<a id="…">`/`<a name="…">` in that file.
//! External links (anything with a scheme: `https:`, `mailto:`, …) are not
//! checked. Every broken link is reported with its file and line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// Directory names skipped wherever they appear: build output, installed
/// tools, and git's own files.
const SKIPPED_DIR_NAMES: &[&str] = &["target", ".venv", "node_modules", ".git"];
/// Paths (relative to the root) skipped: fuzzing output, never committed.
const SKIPPED_PATHS: &[&str] = &["fuzz/corpus", "fuzz/artifacts"];

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = repository_root();
    let files = markdown_files(&root);
    for expected in [
        "README.md",
        "SECURITY.md",
        "BENCHMARKS.md",
        "docs/README.md",
    ] {
        assert!(
            files.iter().any(|file| file == Path::new(expected)),
            "{expected} was not found by the walk: {files:?}"
        );
    }
    let broken = broken_links(&root, &files);
    assert!(
        broken.is_empty(),
        "{} broken link(s) in Markdown files:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn broken_links_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(
        root.join("README.md"),
        "# Title\n\
         \n\
         ## Two commands\n\
         \n\
         [ok](docs/page.md#a-field) [ok](#two-commands) [ok](https://example.com/x.md)\n\
         [missing file](docs/nope.md)\n\
         [missing anchor](docs/page.md#nope)\n\
         \n\
         ```\n\
         [inside a code block](docs/nope.md)\n\
         ```\n\
         `[inside code](docs/nope.md)` [self](#title) [bad self](#two-command)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/page.md"),
        "# Page\n\
         \n\
         ### <a id=\"a-field\"></a>`a.field`\n\
         \n\
         ## Same\n\
         \n\
         ## Same\n\
         \n\
         [ok](#afield) [ok](#same-1) [ok](../README.md#title) [ok](../README.md)\n\
         [bad](#same-2)\n",
    )
    .unwrap();
    // Skipped: a broken link under target/ is not reported.
    std::fs::write(root.join("target/x.md"), "[bad](nowhere.md)\n").unwrap();

    let files = markdown_files(root);
    assert_eq!(
        files,
        vec![PathBuf::from("README.md"), PathBuf::from("docs/page.md")]
    );
    let broken = broken_links(root, &files);
    let locations: Vec<&str> = broken
        .iter()
        .map(|report| report.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        locations,
        vec![
            "README.md:6",
            "README.md:7",
            "README.md:12",
            "docs/page.md:10"
        ],
        "{broken:#?}"
    );
}

#[test]
fn heading_slugs_follow_github() {
    let cases = [
        ("DPoP (RFC 9449)", "dpop-rfc-9449"),
        (
            "Debugging a binding with the `cnf-guard` CLI",
            "debugging-a-binding-with-the-cnf-guard-cli",
        ),
        (
            "jwt_authn settings cnf-guard relies on",
            "jwt_authn-settings-cnf-guard-relies-on",
        ),
        ("The trust model, plainly", "the-trust-model-plainly"),
        ("`problem_type_base`", "problem_type_base"),
        (
            "<a id=\"certificate-source\"></a>`certificate.source`",
            "certificatesource",
        ),
        ("[Linked](elsewhere.md) heading", "linked-heading"),
        (
            "Tokens bound both ways, and tokens without a key",
            "tokens-bound-both-ways-and-tokens-without-a-key",
        ),
    ];
    for (heading, slug) in cases {
        assert_eq!(github_slug(heading), slug, "{heading}");
    }
}

/// The Markdown files under `root`, relative to it, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = std::fs::read_dir(root.join(&relative))
            .unwrap_or_else(|error| panic!("reading {}: {error}", root.join(&relative).display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = relative.join(&name);
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                let skipped = SKIPPED_DIR_NAMES.contains(&name.as_str())
                    || SKIPPED_PATHS.iter().any(|skip| path == Path::new(skip));
                if !skipped {
                    pending.push(path);
                }
            } else if kind.is_file() && name.to_ascii_lowercase().ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// One line per broken link: `file:line: target: reason`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut anchors_of: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
        for link in links(&text) {
            if let Err(reason) = check_link(root, file, &link.target, &mut anchors_of) {
                broken.push(format!(
                    "{}:{}: {}: {reason}",
                    file.display(),
                    link.line,
                    link.target
                ));
            }
        }
    }
    broken
}

fn check_link(
    root: &Path,
    from: &Path,
    target: &str,
    anchors_of: &mut HashMap<PathBuf, BTreeSet<String>>,
) -> Result<(), String> {
    if has_scheme(target) {
        return Ok(());
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(percent_decode(fragment))),
        None => (target, None),
    };
    let path = percent_decode(path.split_once('?').map_or(path, |(path, _query)| path));
    let resolved = if path.is_empty() {
        from.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        normalize(Path::new(from_root)).ok_or("points outside the repository")?
    } else {
        let directory = from.parent().unwrap_or(Path::new(""));
        normalize(&directory.join(&path)).ok_or("points outside the repository")?
    };
    let on_disk = root.join(&resolved);
    if !on_disk.exists() {
        return Err(format!("no such file or directory {}", resolved.display()));
    }
    let Some(fragment) = fragment.filter(|fragment| !fragment.is_empty()) else {
        return Ok(());
    };
    // GitHub shows a directory's README.md, so an anchor in a directory link
    // names a heading there.
    let document = if on_disk.is_dir() {
        let readme = resolved.join("README.md");
        if !root.join(&readme).is_file() {
            return Err(format!(
                "#{fragment} in a directory without a README.md ({})",
                resolved.display()
            ));
        }
        readme
    } else {
        resolved
    };
    let is_markdown = document
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("md"));
    if !is_markdown {
        return if is_line_anchor(&fragment) {
            Ok(())
        } else {
            Err(format!(
                "#{fragment} on a file that is not Markdown ({})",
                document.display()
            ))
        };
    }
    let anchors = anchors_of.entry(document.clone()).or_insert_with(|| {
        let text = std::fs::read_to_string(root.join(&document)).unwrap_or_default();
        anchors(&text)
    });
    if anchors.contains(&fragment) {
        Ok(())
    } else {
        Err(format!(
            "no heading or <a id> for #{fragment} in {}",
            document.display()
        ))
    }
}

/// `https:`, `mailto:`, …: a URI scheme before any `/`, `?` or `#`.
fn has_scheme(target: &str) -> bool {
    let Some((scheme, _rest)) = target.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// GitHub's line anchors on a file view: `L10`, `L10-L20`.
fn is_line_anchor(fragment: &str) -> bool {
    fragment.split('-').all(|part| {
        part.strip_prefix('L')
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// `a/b/../c` → `a/c`; `None` if the path climbs out of the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Link {
    line: usize,
    target: String,
}

/// The link targets in `text` with their line numbers: inline links and
/// images `[text](target)`, reference definitions `[label]: target`, and
/// `href`/`src` in HTML. Code blocks and code spans hold no links.
fn links(text: &str) -> Vec<Link> {
    let prose = without_code(text);
    let line_of = |offset: usize| {
        prose
            .get(..offset)
            .map_or(0, |before| before.matches('\n').count())
            + 1
    };
    let mut found = Vec::new();
    // Inline links and images.
    let mut from = 0;
    while let Some(at) = prose.get(from..).and_then(|rest| rest.find("](")) {
        let start = from + at + 2;
        if let Some(target) = prose.get(start..).and_then(inline_target) {
            found.push(Link {
                line: line_of(start),
                target,
            });
        }
        from = start;
    }
    // Reference definitions: `[label]: target` at the start of a line.
    let mut offset = 0;
    for line in prose.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if line.len() - trimmed.len() <= 3 && trimmed.starts_with('[') {
            if let Some((_label, rest)) = trimmed.split_once("]:") {
                if let Some(target) = rest.split_whitespace().next() {
                    let target = target.trim_start_matches('<').trim_end_matches('>');
                    found.push(Link {
                        line: line_of(offset),
                        target: target.to_owned(),
                    });
                }
            }
        }
        offset += line.len();
    }
    // HTML attributes.
    for attribute in ["href=", "src="] {
        let mut from = 0;
        while let Some(at) = prose.get(from..).and_then(|rest| rest.find(attribute)) {
            let start = from + at + attribute.len();
            if let Some(value) = prose.get(start..).and_then(quoted) {
                found.push(Link {
                    line: line_of(start),
                    target: value.to_owned(),
                });
            }
            from = start;
        }
    }
    found.sort_by_key(|link| link.line);
    found
}

/// The target of an inline link, from just after `](`: `<…>`, or up to the
/// first space or the `)` that closes the link (parentheses may nest).
fn inline_target(rest: &str) -> Option<String> {
    let rest = rest.trim_start_matches([' ', '\t']);
    if let Some(bracketed) = rest.strip_prefix('<') {
        return bracketed
            .split_once('>')
            .map(|(target, _)| target.to_owned());
    }
    let mut depth = 0usize;
    for (index, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return rest.get(..index).map(str::to_owned),
            ')' => depth -= 1,
            c if c.is_whitespace() => return rest.get(..index).map(str::to_owned),
            _ => {}
        }
    }
    None
}

/// `"value"` or `'value'` at the start of `rest`.
fn quoted(rest: &str) -> Option<&str> {
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = rest.get(1..)?;
    inner.split_once(quote).map(|(value, _)| value)
}

/// Every anchor a Markdown file defines: a GitHub slug per heading (with
/// `-1`, `-2`, … for repeats) and every explicit `<a id>`/`<a name>`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in without_code_blocks(text).lines() {
        if let Some(heading) = atx_heading(line) {
            let slug = github_slug(heading);
            let count = seen.entry(slug.clone()).or_insert(0);
            anchors.insert(if *count == 0 {
                slug
            } else {
                format!("{slug}-{count}")
            });
            *count += 1;
        }
    }
    let prose = without_code(text);
    let mut from = 0;
    while let Some(at) = prose.get(from..).and_then(|rest| rest.find("<a ")) {
        let start = from + at;
        let end = prose
            .get(start..)
            .and_then(|rest| rest.find('>'))
            .map_or(prose.len(), |close| start + close);
        let tag = prose.get(start..end).unwrap_or_default();
        for attribute in [" id=", " name="] {
            if let Some(value) = tag
                .find(attribute)
                .and_then(|at| tag.get(at + attribute.len()..))
                .and_then(quoted)
            {
                anchors.insert(value.to_owned());
            }
        }
        from = end;
    }
    anchors
}

/// The text of an ATX heading (`## Text ##`), or `None`.
fn atx_heading(line: &str) -> Option<&str> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = trimmed.get(level..)?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let text = rest.trim();
    // An optional closing sequence of `#`s, after a space.
    let without_closing = text.trim_end_matches('#');
    Some(
        if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
            without_closing.trim_end()
        } else {
            text
        },
    )
}

/// GitHub's anchor for a heading: the rendered text, lower-cased, without
/// characters other than letters, digits, spaces, `-` and `_`, and with
/// spaces turned to `-`.
fn github_slug(heading: &str) -> String {
    rendered_text(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A heading's text as GitHub renders it, near enough for its slug: HTML
/// tags dropped, `[text](target)` reduced to `text`. (Backticks and other
/// punctuation are dropped by the slug itself.)
fn rendered_text(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(close) = rest.find('>') {
                rest = rest.get(close + 1..).unwrap_or_default();
                continue;
            }
        }
        if c == ']' {
            if let Some(after) = rest.strip_prefix("](") {
                if let Some(close) = after.find(')') {
                    rest = after.get(close + 1..).unwrap_or_default();
                    continue;
                }
            }
        }
        if c != '[' && c != ']' {
            out.push(c);
        }
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    out
}

/// `text` with fenced code blocks blanked (newlines kept, so offsets and line
/// numbers still match the file).
fn without_code_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        let blank = match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                let info = trimmed.get(run..).unwrap_or_default();
                if m == '`' && info.contains('`') {
                    false
                } else {
                    fence = Some((m, run));
                    true
                }
            }
            (Some((open, length)), Some(m)) if m == open && run >= length => {
                if trimmed.get(run..).unwrap_or_default().trim().is_empty() {
                    fence = None;
                }
                true
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if blank {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `text` with fenced code blocks and code spans blanked, byte for byte. A
/// code span may run over several lines but not over a blank line.
fn without_code(text: &str) -> String {
    let mut bytes = without_code_blocks(text).into_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'`') {
            i += 1;
            continue;
        }
        let run = bytes
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| **b == b'`')
            .count();
        match closing_run(&bytes, i + run, run) {
            Some(end) => {
                for byte in bytes.get_mut(i..end).unwrap_or_default() {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    // Only ASCII backtick spans were replaced, by ASCII spaces, so the bytes
    // are still UTF-8.
    String::from_utf8(bytes).expect("UTF-8")
}

/// The end of the run of exactly `length` backticks that closes a code span
/// opened before `from`, if one comes before the paragraph ends.
fn closing_run(bytes: &[u8], from: usize, length: usize) -> Option<usize> {
    let mut i = from;
    // The span opened mid-line; a line holding only whitespace ends it.
    let mut blank_line = false;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'`' => {
                let run = bytes
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| **b == b'`')
                    .count();
                if run == length {
                    return Some(i + run);
                }
                i += run;
                blank_line = false;
                continue;
            }
            b'\n' if blank_line => return None,
            b'\n' => blank_line = true,
            b' ' | b'\t' | b'\r' => {}
            _ => blank_line = false,
        }
        i += 1;
    }
    None
}
