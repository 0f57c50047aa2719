//! BuildKit's own parser and shell-lexer vectors, read from
//! `shared/conformance/buildkit/` (or `$KILN_CONFORMANCE_DIR/buildkit`);
//! see its SOURCE.md for the formats.

use std::path::{Path, PathBuf};

use kiln_dockerfile::parser;
use kiln_dockerfile::shell::{process_word, process_words};

#[path = "../../../tests/common/conformance.rs"]
mod conformance;

fn buildkit() -> Option<PathBuf> {
    conformance::dir().map(|d| d.join("buildkit"))
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_positive_case_dumps_byte_for_byte() {
    let Some(root) = buildkit() else { return };
    let cases = cases(&root.join("parser/testfiles"));
    assert_eq!(cases.len(), 33);
    let mut failures = Vec::new();
    for case in &cases {
        let source = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        match parser::parse(&source) {
            Ok(file) if file.dump() == expected => {}
            Ok(file) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{}",
                case.display(),
                file.dump()
            )),
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_negative_case_fails() {
    let Some(root) = buildkit() else { return };
    let cases = cases(&root.join("parser/testfiles-negative"));
    assert_eq!(cases.len(), 4);
    for case in cases {
        let source = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        assert!(parser::parse(&source).is_err(), "{} parsed", case.display());
    }
}

#[test]
fn instructions_carry_their_line_spans() {
    let Some(root) = buildkit() else { return };
    let source = std::fs::read_to_string(root.join("parser/testfile-line/Dockerfile")).unwrap();
    let file = parser::parse(&source).unwrap();
    let spans: Vec<(usize, usize)> = file
        .instructions
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn env_var_vectors() {
    let Some(root) = buildkit() else { return };
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let text = std::fs::read_to_string(root.join("shell/envVarTest")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "malformed vector: {line}");
        let (platform, input, expected) = (fields[0], fields[1], fields[2]);
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("unknown platform {other} in {line}"),
        }
        checked += 1;
        let got = process_word(input, &env, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => word == expected,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input}: expected `{expected}`, got {got:?}"));
        }
    }
    assert!(checked > 200, "only {checked} vectors read");
    assert!(
        failures.is_empty(),
        "{} vectors fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_vectors() {
    let Some(root) = buildkit() else { return };
    let text = std::fs::read_to_string(root.join("shell/wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (name, value) = assignment.trim_start_matches(' ').split_once('=').unwrap();
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let (input, expected) = line.split_once('|').expect("one | per vector");
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got =
            process_words(input.trim(), &env, '\\').unwrap_or_else(|_| vec!["error".to_owned()]);
        if got != expected {
            failures.push(format!("{input}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(checked >= 20, "only {checked} vectors read");
    assert!(
        failures.is_empty(),
        "{} vectors fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
