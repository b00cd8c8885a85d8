//! The documentation's links: every relative link in the repository's Markdown resolves to a
//! file inside the repository, every `#anchor` to a heading of the page it names (GitHub's
//! slug rules), the repository paths the README and docs/ cite in code spans exist, and no
//! page cites a document kept outside the repository. A reader who clones the repository must
//! be able to follow every link.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.md` of the repository. Build output (`target/`, also `fuzz/target/`) and git's
/// own directory are not the repository's documents.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != ".git" && name != "target" {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines outside fenced code blocks: a `#` or `](` inside a code block is code, not
/// markup.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) if trimmed.starts_with(marker) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => lines.push(line),
        }
    }
    lines
}

/// The line without its inline code spans (`` `[a](b)` `` is text, not a link).
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

/// The anchor GitHub gives a heading: lowercase, every character but letters, digits,
/// spaces, `-` and `_` dropped, then each space turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets GitHub's `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in outside_fences(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        let Some(title) = line.get(hashes..).and_then(|t| t.strip_prefix(' ')) else {
            continue;
        };
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let base = slug(title.trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of a page's links: inline `[text](target)` and `![alt](target)`, and
/// reference definitions `[label]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in outside_fences(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = rest.get(at + 2..).unwrap_or("");
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            let target = rest.get(..end).unwrap_or(rest);
            out.push(target.trim_matches(['<', '>']).to_string());
        }
        if let Some((label, target)) = line.trim_start().split_once("]: ")
            && label.starts_with('[')
            && !label.contains("](")
        {
            out.push(target.trim().trim_matches(['<', '>']).to_string());
        }
    }
    out
}

/// What is wrong with one link of `page`, if anything.
fn broken(page: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().unwrap_or(page).join(path)
    };
    let Ok(file) = file.canonicalize() else {
        return Some(format!("{target}: no such file"));
    };
    let root = repo()
        .canonicalize()
        .unwrap_or_else(|e| panic!("resolving the repository root: {e}"));
    if !file.starts_with(&root) {
        return Some(format!("{target}: outside the repository"));
    }
    let anchor = anchor?;
    if file.extension().is_some_and(|e| e == "md") && !anchors(&read(&file)).contains(anchor) {
        return Some(format!("{target}: {} has no heading #{anchor}", rel(&file)));
    }
    None
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let pages = markdown_files();
    for needed in ["README.md", "docs/design.md", "charts/README.md"] {
        assert!(
            pages.contains(&repo().join(needed)),
            "{needed} is one of the documents checked"
        );
    }
    let broken: Vec<String> = pages
        .iter()
        .flat_map(|page| {
            link_targets(&read(page))
                .into_iter()
                .filter_map(|target| broken(page, &target))
                .map(|why| format!("{}: {why}", rel(page)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The repository paths a page cites in code spans (`` `src/webhook/cache.rs` ``,
/// `` `config/samples/` ``): a span without spaces whose first component is one of the
/// repository's top-level directories. Spans with a placeholder (`<target>`, `*`, `$VAR`,
/// `…`) name a family of files, not one.
fn cited_paths(text: &str, top_dirs: &BTreeSet<String>) -> Vec<String> {
    outside_fences(text)
        .into_iter()
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .map(str::trim)
        .filter(|span| {
            !span.is_empty()
                && !span.contains(char::is_whitespace)
                && !span.contains(['<', '>', '*', '$', '{', '}', '…'])
                && !span.contains("...")
                && span
                    .split_once('/')
                    .is_some_and(|(first, _)| top_dirs.contains(first))
        })
        .map(String::from)
        .collect()
}

/// The README and the docs cite files by path, outside links too (the README's "where to
/// change what" table, the docs' `scripts/...` and `tests/it/...`): each must exist, so that a
/// file that moves takes its citations along.
#[test]
fn every_repository_path_cited_in_the_readme_and_docs_exists() {
    let top_dirs: BTreeSet<String> = fs::read_dir(repo())
        .unwrap_or_else(|e| panic!("listing the repository: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("listing the repository: {e}")))
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && name != "target")
        .collect();
    for needed in ["src", "docs", "tests", "scripts"] {
        assert!(
            top_dirs.contains(needed),
            "{needed}/ is a top-level directory"
        );
    }
    let pages: Vec<PathBuf> = markdown_files()
        .into_iter()
        .filter(|page| {
            let page = rel(page);
            page == "README.md" || page.strip_prefix("docs/").is_some_and(|p| !p.contains('/'))
        })
        .collect();
    assert!(pages.len() > 5, "README.md and docs/*.md: {pages:?}");
    let missing: Vec<String> = pages
        .iter()
        .flat_map(|page| {
            cited_paths(&read(page), &top_dirs)
                .into_iter()
                .filter(|path| !repo().join(path).exists())
                .map(|path| format!("{}: {path}", rel(page)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "cited paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn cited_paths_are_spans_under_a_top_level_directory() {
    let top: BTreeSet<String> = ["src", "fuzz"].into_iter().map(String::from).collect();
    let page = "`src/testing.rs` and `src/mutate/` (`pod.rs`), `fuzz/corpus/<target>/`,\n\
                `irsa webhook --help`, `~/.cache/irsa`, `target/release/irsa`\n\
                ```sh\nls `src/in_a_fence.rs`\n```\n";
    assert_eq!(cited_paths(page, &top), ["src/testing.rs", "src/mutate/"]);
}

#[test]
fn no_document_cites_a_file_outside_the_repository() {
    let cites: Vec<String> = markdown_files()
        .iter()
        .flat_map(|page| {
            let text = read(page);
            ["SPEC.md", "SPEC §", "../shared"]
                .into_iter()
                .filter(|outside| text.contains(outside))
                .map(|outside| format!("{} mentions {outside}", rel(page)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        cites.is_empty(),
        "the contract is docs/design.md:\n{}",
        cites.join("\n")
    );
}

#[test]
fn anchors_follow_githubs_slug_rules() {
    let page = "# The doctor: `irsa doctor`\n## 4.3 Trust-policy compiler (the heart)\n\
                ## 3.2 `IAMRoleGrant` (cluster-scoped) — who may bind what\n\
                ```sh\n# a comment, not a heading\n```\n## Upgrade\n## Upgrade\n";
    let want: BTreeSet<String> = [
        "the-doctor-irsa-doctor",
        "43-trust-policy-compiler-the-heart",
        "32-iamrolegrant-cluster-scoped--who-may-bind-what",
        "upgrade",
        "upgrade-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(anchors(page), want);
}
