//! The `maven-artifact` step: collects what `mvn package` built as the
//! step's artifact, with its Maven coordinates and sha256, after checking
//! each JAR/WAR is a zip with a manifest. With `layers: true` it also
//! splits the application Jib-style (see [`layers`]) so an image build
//! copies dependencies, resources and classes as separate layers.
//!
//! The step reads the project (read-only workspace) and writes only its
//! output directory: the artifacts under their file names,
//! `maven-artifact.json`, and `layers/` when asked.

mod layers;
mod pom;
mod zip;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_dockerfile::pattern;
use kiln_sdk::input::{Boolean, Given, GuestPath, Input, Text};
use kiln_sdk::{
    CapabilityKind, Error, Inputs, Outputs, PluginInfo, Step, StepContext, ValueKind, export_step,
};
use serde::Serialize;

const PROJECT: Input<GuestPath> = Input::path(
    "project",
    "The Maven project directory (default: the step's workspace)",
);
const POM: Input<Text, Given> =
    Input::text("pom", "The pom, relative to the project").default("pom.xml");
const ARTIFACTS: Input<Text> = Input::text(
    "artifacts",
    "Globs of the built files, relative to the project, separated by spaces (default: target/FINALNAME.EXT from the pom)",
);
const LAYERS: Input<Boolean, Given> = Input::boolean(
    "layers",
    "Also split the application into layers/{dependencies,snapshot-dependencies,resources,classes}",
)
.default(false);

/// `maven-artifact.json`: what the artifact is, for the next steps.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    group_id: String,
    artifact_id: String,
    version: String,
    packaging: String,
    artifacts: Vec<ArtifactFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    main_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<layers::Written>,
}

#[derive(Debug, Serialize)]
struct ArtifactFile {
    file: String,
    size: u64,
    sha256: String,
}

struct MavenArtifact;

impl Step for MavenArtifact {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "maven-artifact",
            env!("CARGO_PKG_VERSION"),
            "Collects a Maven build's JAR/WAR with its coordinates and sha256, optionally split into Jib-style layers",
        )
        .input(&PROJECT)
        .input(&POM)
        .input(&ARTIFACTS)
        .input(&LAYERS)
        .output("coordinates", ValueKind::Text, "groupId:artifactId:packaging:version")
        .output("file", ValueKind::Text, "The (first) artifact's file name in the output")
        .output("sha256", ValueKind::Text, "Its sha256 digest")
        .output("main-class", ValueKind::Text, "The application's main class, from its manifest")
        .needs(CapabilityKind::Read, PROJECT.name(), "reads pom.xml and target/")
        .needs(CapabilityKind::Write, "output", "writes the artifact, maven-artifact.json and layers/")
    }

    fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, Error> {
        let project = PathBuf::from(PROJECT.get(&inputs)?.unwrap_or(context.workspace));
        let pom_name = POM.get(&inputs)?;
        let pom_path = project.join(&pom_name);
        let text = std::fs::read_to_string(&pom_path).map_err(|e| {
            Error::invalid_input(format!(
                "cannot read {}: {e} (is `project` the Maven project?)",
                pom_path.display()
            ))
        })?;
        let pom = pom::parse(&pom_name, &text)?;
        let coordinates = format!(
            "{}:{}:{}:{}",
            pom.group_id, pom.artifact_id, pom.packaging, pom.version
        );
        kiln_sdk::info!("{pom_name}: {coordinates}");

        let files = match ARTIFACTS.get(&inputs)?.filter(|g| !g.trim().is_empty()) {
            Some(globs) => find(&project, &globs)?,
            None => {
                let extension = pom.extension().ok_or_else(|| {
                Error::invalid_input(format!(
                    "{pom_name}: packaging `pom` builds no artifact; point `project` at a module that packages a jar or war"
                ))
            })?;
                let file = project
                    .join("target")
                    .join(format!("{}.{extension}", pom.final_name));
                if !file.is_file() {
                    return Err(Error::invalid_input(format!(
                        "{pom_name} says the artifact is target/{}.{extension}, but there is no such file; run `mvn package` first (or give `artifacts`)",
                        pom.final_name
                    )));
                }
                vec![file]
            }
        };

        let output = PathBuf::from(&context.output);
        let mut record = Record {
            group_id: pom.group_id.clone(),
            artifact_id: pom.artifact_id.clone(),
            version: pom.version.clone(),
            packaging: pom.packaging.clone(),
            artifacts: Vec::new(),
            main_class: None,
            layers: None,
        };
        for file in &files {
            let mut zip = zip::Zip::open(file)?;
            let manifest = zip.entry("META-INF/MANIFEST.MF").cloned().ok_or_else(|| {
                Error::invalid_input(format!(
                    "{} has no META-INF/MANIFEST.MF; it is not a JAR/WAR built by Maven",
                    file.display()
                ))
            })?;
            let manifest = String::from_utf8_lossy(&zip.read_to_vec(&manifest)?).into_owned();
            if record.main_class.is_none() {
                record.main_class = zip::manifest_value(&manifest, "Start-Class")
                    .or_else(|| zip::manifest_value(&manifest, "Main-Class"));
            }
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (size, sha256) = copy_hashed(file, &output.join(&name))?;
            kiln_sdk::info!("{name}: {size} bytes, {sha256}");
            record.artifacts.push(ArtifactFile {
                file: name,
                size,
                sha256,
            });
        }
        if LAYERS.get(&inputs)? {
            let written = layers::split(&project, &files[0], &output.join("layers"))?;
            let counts: Vec<String> = written
                .files
                .iter()
                .map(|(layer, files)| format!("{layer} {files} files"))
                .collect();
            kiln_sdk::info!("layers: {}", counts.join(", "));
            record.layers = Some(written);
        }
        let json = serde_json::to_vec_pretty(&record).expect("the record serializes");
        let record_path = output.join("maven-artifact.json");
        std::fs::write(&record_path, json).map_err(|e| Error::io(&record_path, e))?;
        let first = &record.artifacts[0];
        Ok(Outputs::new()
            .text("coordinates", coordinates)
            .text("file", first.file.clone())
            .text("sha256", first.sha256.clone())
            .text("main-class", record.main_class.clone().unwrap_or_default()))
    }
}

/// The files matching space-separated globs (the file-name part may hold
/// wildcards), relative to the project; an empty match is an error.
fn find(project: &Path, globs: &str) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    for glob in globs.split_whitespace() {
        if glob.starts_with('/') || glob.split('/').any(|p| p == "..") {
            return Err(Error::invalid_input(format!(
                "`{glob}` must stay inside the project"
            )));
        }
        let (dir, name) = glob.rsplit_once('/').unwrap_or(("", glob));
        let dir_path = project.join(dir);
        let mut matched: Vec<PathBuf> = std::fs::read_dir(&dir_path)
            .map_err(|e| Error::invalid_input(format!("`{glob}`: {}: {e}", dir_path.display())))?
            .filter_map(Result::ok)
            .filter(|item| {
                pattern::matches(name, &item.file_name().to_string_lossy()).unwrap_or(false)
            })
            .map(|item| item.path())
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            return Err(Error::invalid_input(format!(
                "`{glob}` matches no file in {}; run `mvn package` first",
                project.display()
            )));
        }
        matched.sort();
        found.extend(matched);
    }
    Ok(found)
}

/// Copy `from` to `to`, hashing on the host; returns size and digest.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), Error> {
    let mut reader = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
    let mut writer = std::fs::File::create(to).map_err(|e| Error::io(to, e))?;
    let mut hasher = kiln_sdk::digest::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buffer).map_err(|e| Error::io(from, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        writer
            .write_all(&buffer[..n])
            .map_err(|e| Error::io(to, e))?;
        size += n as u64;
    }
    Ok((size, hasher.finish_oci()))
}

export_step!(MavenArtifact);
