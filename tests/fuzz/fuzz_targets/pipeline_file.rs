//! `kiln_pipeline`: any `kiln.yml` text is validated into a pipeline or
//! refused with an error naming a position in the file. A valid pipeline
//! has names from the safe alphabet, its rules decide, and its GitLab
//! export prints as YAML that reads back as the same document.
//!
//! Build with `--features host`.
#![no_main]

use std::path::PathBuf;

use kiln_pipeline::{Pipeline, export, rules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Rule conditions also stand alone (`if:` values).
    if let Ok(condition) = rules::Condition::parse(text) {
        condition.holds(&|name| (name.len() % 2 == 0).then(|| name.to_owned()));
    }

    let pipeline = match Pipeline::parse("kiln.yml", text, PathBuf::from("/nonexistent/project")) {
        Ok(pipeline) => pipeline,
        Err(error) => {
            error.to_string();
            return;
        }
    };
    let safe = |name: &str| {
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    for step in &pipeline.steps {
        assert!(safe(&step.name), "step name {:?}", step.name);
        for need in &step.needs {
            assert!(
                pipeline.step(need).is_some(),
                "{} needs unknown {need}",
                step.name
            );
        }
        rules::decide(&step.rules, &|_| None);
        rules::decide(&step.rules, &|name| Some(name.to_owned()));
    }
    let excluded = rules::excluded_steps(&pipeline, &|_| None);
    let _ = rules::check_needs(&pipeline, &pipeline.steps, &excluded);

    if let Ok(document) = export::gitlab_document(&pipeline, &export::GitlabOptions::default()) {
        let yaml = export::gitlab(&pipeline, &export::GitlabOptions::default()).unwrap();
        let again: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(again, document, "{yaml}");
    }
});
