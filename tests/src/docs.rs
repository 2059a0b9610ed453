//! The documentation's runnable examples, run against a started stack so the docs can't rot.
//!
//! In `docs/*.md`, a fenced block opened with ```` ```sh run ```` is executed, and the
//! fenced block right after it, if opened with ```` ```text output ````, is what it must
//! print (stdout and stderr together). In the expected text a line `...` stands for any
//! number of lines and `...` inside a line for any text, so ids, times and keys need not be
//! spelled out. The blocks of one page run in order in one shell, so a later block can use
//! a variable an earlier one set, and a failing command stops the page there.
//!
//! The docs are written for `make up`: ports 8081–8084, secrets under `.secrets/`, the
//! Compose project `refdeploy`. The runner rewrites those to the test stack's own.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// One runnable block and what it must print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub line: usize,
    pub script: String,
    pub expected: Option<String>,
}

/// The runnable blocks of a Markdown page, in order.
pub fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut pending: Option<Block> = None;

    while let Some((number, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                // Prose between a block and its output ends the pairing.
                blocks.extend(pending.take());
            }
            continue;
        };
        let body = fence_body(&mut lines);
        let words: Vec<&str> = info.split_whitespace().collect();

        match words.as_slice() {
            ["sh", "run", ..] => {
                blocks.extend(pending.take());
                pending = Some(Block {
                    line: number + 1,
                    script: body,
                    expected: None,
                });
            }
            ["text", "output", ..] => match pending.take() {
                Some(mut block) => {
                    block.expected = Some(body);
                    blocks.push(block);
                }
                None => blocks.push(Block {
                    line: number + 1,
                    script: String::new(),
                    expected: Some(body),
                }),
            },
            _ => blocks.extend(pending.take()),
        }
    }
    blocks.extend(pending);
    blocks
}

fn fence_body<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> String {
    let mut body = String::new();
    for (_, line) in lines.by_ref() {
        if line.trim_start().starts_with("```") {
            break;
        }
        body.push_str(line);
        body.push('\n');
    }
    body
}

/// Whether `actual` is what `expected` describes (see the module's wildcard rules).
pub fn output_matches(expected: &str, actual: &str) -> bool {
    let expected: Vec<&str> = expected.trim_end().lines().map(str::trim_end).collect();
    let actual: Vec<&str> = actual.trim_end().lines().map(str::trim_end).collect();
    lines_match(&expected, &actual)
}

fn lines_match(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, others)| line_matches(first, line) && lines_match(rest, others)),
    }
}

fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }

    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    if !actual.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Text replacements from the docs' `make up` world to a test stack's.
pub type Rewrites = Vec<(String, String)>;

fn rewrite(text: &str, rewrites: &Rewrites) -> String {
    rewrites
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

/// Runs the runnable blocks of `page` in one shell from `root` with `env` added, and
/// describes every block whose output differs or whose commands failed. Empty when the page
/// is right.
pub fn check_page(
    page: &Path,
    root: &Path,
    rewrites: &Rewrites,
    env: &[(String, String)],
) -> anyhow::Result<String> {
    let markdown =
        std::fs::read_to_string(page).with_context(|| format!("reading {}", page.display()))?;
    let blocks = runnable_blocks(&markdown);
    let name = page
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut problems = String::new();

    for block in blocks.iter().filter(|b| b.script.is_empty()) {
        let _ = writeln!(
            problems,
            "{name}:{}: output block with no `sh run` block",
            block.line
        );
    }
    let blocks: Vec<&Block> = blocks.iter().filter(|b| !b.script.is_empty()).collect();
    if blocks.is_empty() {
        return Ok(problems);
    }

    let marker = "@@docs-block@@";
    let mut script = String::from("set -eo pipefail\nexec 2>&1\n");
    for block in &blocks {
        let _ = writeln!(script, "echo {marker}");
        script.push_str(&rewrite(&block.script, rewrites));
    }
    let _ = writeln!(script, "echo {marker}");

    let run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Run from `make test`, make's own variables would change what a nested `make`
        // prints; the docs are written for a reader's plain shell.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .context("running bash")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let separator = format!("{marker}\n");
    let mut outputs = stdout.split(separator.as_str()).skip(1);

    for block in &blocks {
        let Some(output) = outputs.next() else {
            let _ = writeln!(
                problems,
                "{name}:{}: not reached: an earlier command failed ({})",
                block.line, run.status
            );
            continue;
        };
        let finished = outputs.clone().next().is_some();
        if !finished {
            let _ = writeln!(
                problems,
                "{name}:{}: a command failed ({}); output:\n{output}",
                block.line, run.status
            );
            continue;
        }
        if let Some(expected) = &block.expected {
            let expected = rewrite(expected, rewrites);
            if !output_matches(&expected, output) {
                let _ = writeln!(
                    problems,
                    "{name}:{}: output differs\n--- expected\n{expected}--- got\n{output}",
                    block.line
                );
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_pair_with_the_output_that_follows_them() {
        let page = "Intro.\n\n```sh run\necho hi\n```\n\n```text output\nhi\n```\n\n\
                    ```sh\nmake up\n```\n\n```sh run\nA=1\n```\n\n\
                    Prose.\n\n```text output\nx\n```\n";

        let blocks = runnable_blocks(page);

        assert_eq!(blocks.len(), 3, "{blocks:?}");
        assert_eq!(blocks[0].script, "echo hi\n");
        assert_eq!(blocks[0].expected.as_deref(), Some("hi\n"));
        assert_eq!(blocks[0].line, 3);
        assert_eq!(blocks[1].script, "A=1\n");
        assert_eq!(blocks[1].expected, None);
        // An output block after prose belongs to no command: reported, not silently skipped.
        assert_eq!(blocks[2].script, "");
    }

    #[test]
    fn wildcards_stand_for_text_and_for_lines() {
        assert!(output_matches("id: ...\nok\n", "id: 42\nok\n"));
        assert!(output_matches("a...c...e", "abcde"));
        assert!(output_matches("first\n...\nlast", "first\nx\ny\nlast"));
        assert!(output_matches("first\n...\nlast", "first\nlast"));
        assert!(output_matches("...", ""));

        assert!(!output_matches("id: ...\nok\n", "id: 42\nfailed\n"));
        assert!(!output_matches("a...c", "ab"));
        assert!(!output_matches("abc...abc", "abc"));
        assert!(!output_matches("first\n...\nlast", "first\nx"));
        assert!(!output_matches("exact", "exact and more"));
    }

    #[test]
    fn a_page_runs_in_one_shell_and_reports_what_differs() {
        let dir = std::env::temp_dir().join(format!("docs-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("page.md");
        std::fs::write(
            &page,
            "```sh run\nGREETING=hello\necho $GREETING at 127.0.0.1:8081\n```\n\
             ```text output\nhello at 127.0.0.1:8081\n```\n\
             ```sh run\necho $GREETING again\n```\n```text output\nsomething else\n```\n\
             ```sh run\nfalse\necho never\n```\n```sh run\necho unreached\n```\n",
        )
        .unwrap();
        let rewrites = vec![("127.0.0.1:8081".to_owned(), "127.0.0.1:49999".to_owned())];

        let problems = check_page(&page, &dir, &rewrites, &[]).unwrap();

        assert!(!problems.contains("page.md:1:"), "{problems}");
        assert!(problems.contains("page.md:8: output differs"), "{problems}");
        assert!(problems.contains("hello again"), "{problems}");
        assert!(
            problems.contains("page.md:14: a command failed"),
            "{problems}"
        );
        assert!(problems.contains("page.md:18: not reached"), "{problems}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
