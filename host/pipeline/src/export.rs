//! `kiln export gitlab`: the pipeline as a `.gitlab-ci.yml`, one job per
//! step, so that GitLab's runners distribute the work and carry each
//! step's `.kiln/artifacts/<step>/` to the jobs that need it.

use std::path::Path;

use serde_json::{Map, Value, json};

use kiln_grant::plugin::{DOCKERFILE_BUILD, REGISTRY};

use crate::{Action, Pipeline, PipelineError, Rule, Step};

/// Where each job keeps kiln's store, relative to the project.
const STORE: &str = ".kiln";

/// kiln's own cache (compiled plugins, build layouts) in each job, kept
/// between jobs by GitLab's cache: every job starts on a fresh machine.
const KILN_CACHE: &str = ".kiln-cache";

/// The most caches GitLab lets one job have.
const MAX_CACHES: usize = 4;

/// How the exported pipeline runs on GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitlabOptions {
    /// The image every job runs in (`default: image:`), one with `kiln` on
    /// its PATH; `None` leaves it to the runner's default.
    pub image: Option<String>,
    /// How long GitLab keeps each job's hand-off (`artifacts:expire_in`):
    /// they serve the jobs after it, not people.
    pub expire_in: String,
}

impl Default for GitlabOptions {
    fn default() -> Self {
        GitlabOptions {
            image: None,
            expire_in: "1 day".into(),
        }
    }
}

/// The `.gitlab-ci.yml` document for `pipeline`, as JSON data (the shape
/// the YAML is printed from and the schema is checked against).
pub fn gitlab_document(
    pipeline: &Pipeline,
    options: &GitlabOptions,
) -> Result<Value, PipelineError> {
    // Jobs run in the repository root; the pipeline's own paths are
    // relative to the directory of its file.
    let file = Path::new(&pipeline.file);
    let base = file.parent().filter(|p| !p.as_os_str().is_empty());
    let in_project = |path: &str| match base {
        Some(dir) => dir.join(path).display().to_string(),
        None => path.to_owned(),
    };
    let mut document = Map::new();
    if let Some(image) = &options.image {
        document.insert("default".into(), json!({ "image": image }));
    }
    document.insert(
        "variables".into(),
        json!({ "KILN_CACHE_DIR": format!("$CI_PROJECT_DIR/{KILN_CACHE}") }),
    );
    document.insert("stages".into(), json!(pipeline.stages));
    let carried = carried_builds(pipeline);
    for step in &pipeline.steps {
        if carried.contains(&step.name.as_str()) {
            continue;
        }
        // The image builds this job carries run first, here: those its
        // written needs name, and the carried builds those need. A need
        // from stage order alone on a carried build is dropped.
        let builds = carried_into(pipeline, step, &carried);
        let mut needs: Vec<Value> = Vec::new();
        for owner in builds.iter().copied().chain(std::iter::once(step)) {
            for need in gitlab_needs(pipeline, owner) {
                if !carried.iter().any(|b| need_names(&need, b)) && !needs.contains(&need) {
                    needs.push(need);
                }
            }
        }
        let mut job = Map::new();
        job.insert("stage".into(), json!(step.stage));
        job.insert("needs".into(), Value::Array(needs));
        if !step.rules.is_empty() {
            job.insert("rules".into(), gitlab_rules(&step.rules));
        }
        let selected: String = builds
            .iter()
            .chain(std::iter::once(&step))
            .map(|s| format!(" --step {}", s.name))
            .collect();
        job.insert(
            "script".into(),
            json!([format!(
                "kiln run {}{selected} --artifacts-dir {STORE}",
                pipeline.file
            )]),
        );
        let mut artifacts = Map::new();
        if let Some(name) = step.artifacts.as_ref().and_then(|a| a.name.clone()) {
            artifacts.insert("name".into(), json!(name));
        }
        artifacts.insert(
            "paths".into(),
            json!([format!("{STORE}/artifacts/{}/", step.name)]),
        );
        artifacts.insert("expire_in".into(), json!(options.expire_in));
        job.insert("artifacts".into(), Value::Object(artifacts));
        let mut caches = vec![json!({ "key": "kiln", "paths": [format!("{KILN_CACHE}/")] })];
        for cache in builds
            .iter()
            .chain(std::iter::once(&step))
            .filter_map(|s| s.cache.as_ref())
        {
            caches.push(json!({
                "key": gitlab_cache_key(&cache.key.text, &in_project),
                "paths": cache.paths.iter().map(|p| in_project(p)).collect::<Vec<_>>(),
            }));
        }
        if caches.len() > MAX_CACHES {
            return Err(pipeline.error(
                step.position,
                format!(
                    "step `{}`: its GitLab job would need {} caches (kiln's, its own and those of the image builds it runs), and GitLab allows {MAX_CACHES}; drop a `cache:` from one of them",
                    step.name,
                    caches.len()
                ),
            ));
        }
        job.insert("cache".into(), json!(caches));
        document.insert(step.name.clone(), Value::Object(job));
    }
    let document = Value::Object(document);
    check(&document).map_err(|m| pipeline.error(Default::default(), m))?;
    Ok(document)
}

/// The `dockerfile-build` steps (without rules of their own) that a
/// `registry` step names in its written `needs:`: each runs in the job of
/// every step whose written needs name it, so its layout, with the base
/// image's layers, goes from the build to the push on the job's own disk
/// instead of as a GitLab artifact, which a JRE-sized base would push past
/// GitLab's size limit. (Where such steps' rules do not exclude each
/// other, as the example's push and `where` do, the build runs in each of
/// their jobs.) A registry step that needs the build only by stage order
/// keeps it a job of its own.
fn carried_builds(pipeline: &Pipeline) -> Vec<&str> {
    let uses = |step: &Step, builtin: &str| matches!(&step.action, Action::Plugin { plugin, .. } if plugin.is_builtin(builtin));
    pipeline
        .steps
        .iter()
        .filter(|build| uses(build, DOCKERFILE_BUILD) && build.rules.is_empty())
        .filter(|build| {
            let pushes: Vec<&Step> = pipeline
                .steps
                .iter()
                .filter(|s| uses(s, REGISTRY) && s.needs.contains(&build.name))
                .collect();
            !pushes.is_empty() && pushes.iter().all(|s| s.needs_declared)
        })
        .map(|build| build.name.as_str())
        .collect()
}

/// The carried builds that run in `step`'s job, in pipeline order: those
/// its written needs name, and the carried builds they need.
fn carried_into<'a>(pipeline: &'a Pipeline, step: &Step, carried: &[&str]) -> Vec<&'a Step> {
    let mut wanted: Vec<&str> = Vec::new();
    let mut todo: Vec<&str> = if step.needs_declared {
        step.needs.iter().map(String::as_str).collect()
    } else {
        Vec::new()
    };
    while let Some(name) = todo.pop() {
        if carried.contains(&name) && !wanted.contains(&name) {
            wanted.push(name);
            if let Some(build) = pipeline.step(name) {
                todo.extend(build.needs.iter().map(String::as_str));
            }
        }
    }
    pipeline
        .steps
        .iter()
        .filter(|s| wanted.contains(&s.name.as_str()))
        .collect()
}

/// Whether the `needs:` entry `need` names the job `name`.
fn need_names(need: &Value, name: &str) -> bool {
    need.as_str().or_else(|| need["job"].as_str()) == Some(name)
}

/// The `.gitlab-ci.yml` text for `pipeline`.
pub fn gitlab(pipeline: &Pipeline, options: &GitlabOptions) -> Result<String, PipelineError> {
    let document = gitlab_document(pipeline, options)?;
    let yaml = serde_saphyr::to_string(&document).expect("JSON values serialise as YAML");
    Ok(format!(
        "# Generated by `kiln export gitlab {}`; edit the kiln pipeline, not this file.\n{yaml}",
        pipeline.file
    ))
}

/// kiln's needs from stage order are explicit in GitLab; where such a
/// need has `rules:` it is `optional`, so GitLab goes without it when its
/// rules exclude it, as `kiln run` does. Written needs stay strict: GitLab
/// then refuses the pipeline, as `kiln run` does.
fn gitlab_needs(pipeline: &Pipeline, step: &Step) -> Vec<Value> {
    let has_rules = |name: &str| pipeline.step(name).is_some_and(|s| !s.rules.is_empty());
    step.needs
        .iter()
        .map(|need| {
            if step.needs_declared || !has_rules(need) {
                json!(need)
            } else {
                json!({ "job": need, "optional": true })
            }
        })
        .collect()
}

/// `rules:` as written: kiln's subset is GitLab syntax.
fn gitlab_rules(rules: &[Rule]) -> Value {
    rules
        .iter()
        .map(|rule| {
            let mut entry = Map::new();
            if let Some(condition) = &rule.condition {
                entry.insert("if".into(), json!(condition.text));
            }
            if let Some(when) = rule.when {
                entry.insert("when".into(), json!(when));
            }
            Value::Object(entry)
        })
        .collect()
}

/// `${hash:FILE}` is kiln's; GitLab spells a file-keyed cache
/// `key: { files: [...], prefix: ... }`.
fn gitlab_cache_key(key: &str, in_project: &dyn Fn(&str) -> String) -> Value {
    let mut files = Vec::new();
    let mut prefix = String::new();
    let mut rest = key;
    while let Some(start) = rest.find("${hash:") {
        prefix.push_str(&rest[..start]);
        let after = &rest[start + "${hash:".len()..];
        let Some(end) = after.find('}') else { break };
        files.push(in_project(&after[..end]));
        rest = &after[end + 1..];
    }
    prefix.push_str(rest);
    if files.is_empty() {
        return json!(key);
    }
    let prefix = prefix.trim_matches(|c| c == '-' || c == '_');
    if prefix.is_empty() {
        json!({ "files": files })
    } else {
        json!({ "files": files, "prefix": prefix })
    }
}

/// What GitLab's schema does not check: every `needs` names a job, and
/// every job's stage is declared.
pub fn check(document: &Value) -> Result<(), String> {
    let object = document.as_object().ok_or("the document is not a map")?;
    let stages: Vec<&str> = object
        .get("stages")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let jobs: Vec<(&String, &Map<String, Value>)> = object
        .iter()
        .filter(|(name, _)| !crate::RESERVED.contains(&name.as_str()))
        .filter_map(|(name, job)| job.as_object().map(|j| (name, j)))
        .collect();
    for (name, job) in &jobs {
        let stage = job.get("stage").and_then(Value::as_str).unwrap_or("test");
        if !stages.contains(&stage) {
            return Err(format!(
                "job `{name}` is in stage `{stage}`, which `stages:` does not declare"
            ));
        }
        for need in job
            .get("needs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let target = need
                .as_str()
                .or_else(|| need.get("job").and_then(Value::as_str))
                .unwrap_or_default();
            if !jobs.iter().any(|(other, _)| other.as_str() == target) {
                return Err(format!("job `{name}` needs `{target}`, which is not a job"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_become_gitlab_file_keys() {
        let same = |p: &str| p.to_owned();
        let nested = |p: &str| format!("app/{p}");
        assert_eq!(
            gitlab_cache_key("maven-${hash:pom.xml}", &same),
            json!({"files": ["pom.xml"], "prefix": "maven"})
        );
        assert_eq!(
            gitlab_cache_key("${hash:a}${hash:b}", &nested),
            json!({"files": ["app/a", "app/b"]})
        );
        assert_eq!(
            gitlab_cache_key("plain-$CI_COMMIT_REF_NAME", &same),
            json!("plain-$CI_COMMIT_REF_NAME")
        );
    }

    #[test]
    fn image_builds_run_in_the_jobs_of_the_pushes_that_name_them() {
        let text = "stages: [base, app, push, deploy]\nsteps:\n  b-base:\n    stage: base\n    uses: dockerfile-build\n  b-app:\n    stage: app\n    uses: dockerfile-build\n  push:\n    stage: push\n    needs: [b-app]\n    uses: registry\n  deploy:\n    stage: deploy\n    run: echo deployed\n";
        let export = |text: &str| {
            let pipeline = Pipeline::parse("kiln.yml", text, std::env::temp_dir()).unwrap();
            let document = gitlab_document(&pipeline, &GitlabOptions::default()).unwrap();
            check(&document).unwrap();
            document
        };
        // The push names b-app: b-app runs in its job; b-base, which only
        // b-app needs, stays a job whose hand-off b-app gets.
        let document = export(text);
        assert!(document.get("b-app").is_none());
        assert_eq!(
            document["push"]["script"][0],
            "kiln run kiln.yml --step b-app --step push --artifacts-dir .kiln"
        );
        assert_eq!(document["push"]["needs"], json!(["b-base"]));
        // A later step needs the earlier stages by order only: it does not
        // re-run the carried build, and names no job that is gone.
        assert_eq!(document["deploy"]["needs"], json!(["b-base", "push"]));
        // A push naming both builds runs both, in order, needing neither.
        let document = export(&text.replace("needs: [b-app]", "needs: [b-base, b-app]"));
        assert!(document.get("b-base").is_none() && document.get("b-app").is_none());
        assert_eq!(
            document["push"]["script"][0],
            "kiln run kiln.yml --step b-base --step b-app --step push --artifacts-dir .kiln"
        );
        assert_eq!(document["push"]["needs"], json!([]));
    }

    #[test]
    fn a_job_never_needs_more_caches_than_gitlab_allows() {
        let build = |name: &str| {
            format!(
                "  {name}:\n    stage: build\n    uses: dockerfile-build\n    cache:\n      key: {name}\n      paths: [{name}]\n"
            )
        };
        let text = format!(
            "stages: [build, push]\nsteps:\n{}{}{}  push:\n    stage: push\n    needs: [a, b, c]\n    uses: registry\n    cache:\n      key: push\n      paths: [p]\n",
            build("a"),
            build("b"),
            build("c")
        );
        let pipeline = Pipeline::parse("kiln.yml", &text, std::env::temp_dir()).unwrap();
        let error = gitlab_document(&pipeline, &GitlabOptions::default()).unwrap_err();
        assert!(error.message.contains("would need 5 caches"), "{error}");
        assert!(error.message.contains("GitLab allows 4"), "{error}");
    }

    #[test]
    fn own_checks_catch_what_the_schema_does_not() {
        assert!(check(&json!({"stages": ["a"], "j": {"stage": "b", "script": ["x"]}})).is_err());
        assert!(
            check(&json!({"stages": ["a"], "j": {"stage": "a", "needs": ["k"], "script": ["x"]}}))
                .is_err()
        );
        assert!(
            check(&json!({"stages": ["a"], "j": {"stage": "a", "needs": [], "script": ["x"]}}))
                .is_ok()
        );
    }
}
