//! The image a stage builds: its config document, layers and history, and
//! how it is written out (OCI layout entry, docker-archive tar).
//!
//! The config is kept as JSON rather than `oci-spec`'s typed config
//! because Docker fields the OCI spec does not define (`OnBuild`, `Shell`,
//! `Healthcheck`) must survive from a base image to the built one.

use std::collections::HashMap;
use std::io::Write;

use kiln_oci::archive;
use kiln_oci::layer::{Layer, parse_digest};
use kiln_oci::spec::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use kiln_oci::{ImageLayout, Reference, registry};
use serde_json::{Map, Value, json};

use crate::BuildError;

/// The platform images are built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... when the architecture has variants.
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, BuildError> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts[..] {
            [os, architecture] | [os, architecture, _]
                if !os.is_empty() && !architecture.is_empty() =>
            {
                Ok(Platform {
                    os: os.to_owned(),
                    architecture: architecture.to_owned(),
                    variant: parts.get(2).map(|v| (*v).to_owned()),
                })
            }
            _ => Err(BuildError::input(format!(
                "platform `{text}` is not OS/ARCH[/VARIANT] (for example linux/amd64)"
            ))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// An image under construction.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config document (`architecture`, `os`, `config`, `history`, ...;
    /// `rootfs` is written from `layers` at the end).
    pub document: Map<String, Value>,
    /// Its layers, base first.
    pub layers: Vec<Layer>,
}

impl Image {
    /// An empty image for `platform` (`FROM scratch`).
    pub fn scratch(platform: &Platform) -> Image {
        let mut document = Map::new();
        document.insert("architecture".into(), json!(platform.architecture));
        document.insert("os".into(), json!(platform.os));
        if let Some(variant) = &platform.variant {
            document.insert("variant".into(), json!(variant));
        }
        // As BuildKit's empty image: a default PATH and `/` as working
        // directory.
        document.insert(
            "config".into(),
            json!({
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
            }),
        );
        Image {
            document,
            layers: Vec::new(),
        }
    }

    /// Resolve `reference` on its registry and download its config into
    /// `layout`. Its layers are fetched later, only if something needs
    /// them ([`fetch_layers`]): a pushed image can reference them unread.
    pub fn pull(
        reference: &Reference,
        platform: &Platform,
        layout: &ImageLayout,
        insecure: bool,
    ) -> Result<Image, BuildError> {
        let mut client = registry::Registry::connect(reference.api_host(), insecure)?;
        let resolved = registry::resolve(&mut client, reference, &platform.to_string())?;
        let manifest = resolved.manifest;
        registry::download(
            &mut client,
            &reference.repository,
            std::iter::once(manifest.config()),
            layout,
        )?;
        let origin = format!("{}/{}", reference.registry, reference.repository);
        let config = layout.read_blob(manifest.config())?;
        let document: Map<String, Value> = serde_json::from_slice(&config).map_err(|e| {
            BuildError::failed(format!(
                "the config of {reference} is not an image config: {e}"
            ))
        })?;
        let diff_ids: Vec<String> = document
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != manifest.layers().len() {
            return Err(BuildError::failed(format!(
                "{reference}: its config lists {} diff_ids for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            )));
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(descriptor, diff_id)| Layer {
                descriptor: oci_layer(descriptor),
                diff_id,
                tar_size: None,
                origin: Some(origin.clone()),
            })
            .collect();
        kiln_sdk::info!("base {reference}@{}", resolved.digest);
        Ok(Image { document, layers })
    }

    /// The `config` object (Env, Cmd, ...), created when missing.
    pub fn config(&mut self) -> &mut Map<String, Value> {
        let value = self.document.entry("config").or_insert_with(|| json!({}));
        if !value.is_object() {
            *value = json!({});
        }
        value.as_object_mut().expect("just made an object")
    }

    /// A `config` field, if set.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.document.get("config").and_then(|c| c.get(name))
    }

    /// The `Env` list as name/value pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        self.field("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect()
    }

    /// Set one variable of `Env`, keeping the order of the others.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(pair) => pair.1 = value.to_owned(),
            None => env.push((name.to_owned(), value.to_owned())),
        }
        let list: Vec<Value> = env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect();
        self.config().insert("Env".into(), Value::Array(list));
    }

    /// Record a history entry the way BuildKit writes them.
    pub fn history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry = json!({
            "created": created,
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        let history = self.document.entry("history").or_insert_with(|| json!([]));
        if let Some(list) = history.as_array_mut() {
            list.push(entry);
        }
    }

    /// Write the config and manifest into `layout`; returns the manifest's
    /// descriptor (not yet in the index).
    pub fn write(&self, layout: &ImageLayout, created: &str) -> Result<Descriptor, BuildError> {
        let mut document = self.document.clone();
        document.insert("created".into(), json!(created));
        let diff_ids: Vec<Value> = self.layers.iter().map(|l| json!(l.diff_id)).collect();
        document.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let config_bytes = serde_json::to_vec(&document)
            .map_err(|e| BuildError::failed(format!("image config: {e}")))?;
        let config_digest = layout.write_blob(&config_bytes)?;
        let config = Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            parse_digest(&config_digest)?,
        );
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(
                self.layers
                    .iter()
                    .map(|l| l.descriptor.clone())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(|e| BuildError::failed(format!("image manifest: {e}")))?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| BuildError::failed(format!("image manifest: {e}")))?;
        let digest = layout.write_blob(&manifest_bytes)?;
        Ok(Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            parse_digest(&digest)?,
        ))
    }
}

/// Download the layers of `layers` that `layout` lacks from the
/// registries they came from.
pub fn fetch_layers(
    layers: &[Layer],
    layout: &ImageLayout,
    insecure: bool,
) -> Result<(), BuildError> {
    for layer in layers.iter().filter(|l| !layout.has_blob(&l.descriptor)) {
        let origin = layer.origin.as_deref().ok_or_else(|| {
            BuildError::failed(format!(
                "layer {} is neither in the layout nor from a registry",
                layer.descriptor.digest()
            ))
        })?;
        let reference = Reference::parse(origin).map_err(|e| BuildError::failed(e.to_string()))?;
        let mut client = registry::Registry::connect(reference.api_host(), insecure)?;
        kiln_sdk::info!(
            "fetching base layer {} from {origin}",
            layer.descriptor.digest()
        );
        registry::download(
            &mut client,
            &reference.repository,
            std::iter::once(&layer.descriptor),
            layout,
        )?;
    }
    Ok(())
}

/// A base layer's descriptor with Docker media types turned into their OCI
/// equivalents (the bytes are the same), so the built manifest is pure OCI.
fn oci_layer(descriptor: &Descriptor) -> Descriptor {
    let media_type = match descriptor.media_type().to_string().as_str() {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        _ => descriptor.media_type().clone(),
    };
    let mut converted = descriptor.clone();
    converted.set_media_type(media_type);
    converted
}

/// Name `manifest` in the layout's index once per name in `names`
/// (replacing entries of the same name), then commit the layout.
pub fn tag(
    layout: &ImageLayout,
    manifest: &Descriptor,
    names: &[String],
) -> Result<(), BuildError> {
    let mut index = layout.index()?;
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            let name = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(registry::REF_NAME));
            !name.is_some_and(|n| names.contains(n))
        })
        .cloned()
        .collect();
    for name in names {
        let mut descriptor = manifest.clone();
        descriptor.set_annotations(Some(HashMap::from([(
            registry::REF_NAME.to_owned(),
            name.clone(),
        )])));
        manifests.push(descriptor);
    }
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(manifests);
    layout.commit(&index)?;
    Ok(())
}

/// Write the image as a `docker save` tar (what `docker load` and
/// `podman load` read): uncompressed layer tars, the config, and
/// `manifest.json` with the repository tags.
pub fn write_docker_archive(
    image: &Image,
    manifest: &Descriptor,
    layout: &ImageLayout,
    repo_tags: &[String],
    path: &std::path::Path,
) -> Result<(), BuildError> {
    let staging = kiln_sdk::files::partial_path(path);
    let result = (|| {
        let file = std::fs::File::create(&staging).map_err(|e| BuildError::io(&staging, e))?;
        let mut out = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let failed = |e: std::io::Error| BuildError::io(&staging, e);
        let manifest_doc: ImageManifest = serde_json::from_slice(&layout.read_blob(manifest)?)
            .map_err(|e| BuildError::failed(format!("re-reading the manifest: {e}")))?;
        let config = layout.read_blob(manifest_doc.config())?;
        let config_name = format!("{}.json", manifest_doc.config().digest().digest());
        append(
            &mut out,
            &config_name,
            config.len() as u64,
            &mut &config[..],
        )
        .map_err(failed)?;
        let mut layer_names = Vec::new();
        for layer in &image.layers {
            let name = format!("{}/layer.tar", layer.diff_id.trim_start_matches("sha256:"));
            let what = layer.descriptor.digest().to_string();
            let size = match layer.tar_size {
                Some(size) => size,
                None => std::io::copy(
                    &mut archive::decompressed(layout.open_blob(&layer.descriptor)?, &what, None)?,
                    &mut std::io::sink(),
                )
                .map_err(failed)?,
            };
            let mut tar = archive::decompressed(layout.open_blob(&layer.descriptor)?, &what, None)?;
            append(&mut out, &name, size, &mut tar).map_err(failed)?;
            layer_names.push(name);
        }
        let index = json!([{
            "Config": config_name,
            "RepoTags": repo_tags,
            "Layers": layer_names,
        }]);
        let index = serde_json::to_vec(&index).expect("JSON values serialize");
        append(
            &mut out,
            "manifest.json",
            index.len() as u64,
            &mut &index[..],
        )
        .map_err(failed)?;
        let mut writer = out.into_inner().map_err(failed)?;
        writer.flush().map_err(failed)?;
        writer.get_ref().sync_all().map_err(failed)?;
        std::fs::rename(&staging, path).map_err(|e| BuildError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result
}

fn append(
    out: &mut tar::Builder<impl Write>,
    name: &str,
    size: u64,
    data: &mut dyn std::io::Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_entry_type(tar::EntryType::Regular);
    out.append_data(&mut header, name, data)
}
