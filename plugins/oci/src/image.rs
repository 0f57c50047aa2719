//! The image being built or pulled: its config document and its layers,
//! the edits a build makes to them (`Env`, history, ...), and how it is
//! written into a layout.
//!
//! The config is kept as a JSON map rather than `oci-spec`'s typed
//! `ImageConfiguration`: that type drops the fields the OCI spec does not
//! define, and Docker's (`OnBuild`, `Shell`, `Healthcheck`, and whatever
//! else a base image carries) must survive from a base image into the one
//! built on it.

use serde_json::{Map, Value, json};

use crate::OciError;
use crate::layer::Layer;
use crate::layout::ImageLayout;
use crate::platform::Platform;
use crate::spec::{Descriptor, ImageManifestBuilder, MediaType};

/// BuildKit's empty image's `PATH`.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image: its config document and layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config document (`architecture`, `os`, `config`, `history`, ...;
    /// `rootfs` and `created` are written from `layers` by
    /// [`Image::write`]).
    pub document: Map<String, Value>,
    /// Its layers, base first.
    pub layers: Vec<Layer>,
}

/// An empty image for `platform`: what `FROM scratch` starts from. As
/// BuildKit's, it has a default `PATH` and `/` as working directory.
pub fn empty(platform: &Platform) -> Image {
    let mut document = Map::new();
    document.insert("architecture".into(), json!(platform.architecture));
    document.insert("os".into(), json!(platform.os));
    if let Some(variant) = &platform.variant {
        document.insert("variant".into(), json!(variant));
    }
    document.insert(
        "config".into(),
        json!({ "Env": [DEFAULT_PATH], "WorkingDir": "/" }),
    );
    Image {
        document,
        layers: Vec::new(),
    }
}

impl Image {
    /// The `config` object (Env, Cmd, ...), created when missing.
    pub fn config(&mut self) -> &mut Map<String, Value> {
        object(self.document.entry("config").or_insert_with(|| json!({})))
    }

    /// A `config` object field (`Labels`, `ExposedPorts`, `Volumes`),
    /// created when missing or not an object.
    pub fn config_object(&mut self, name: &str) -> &mut Map<String, Value> {
        object(self.config().entry(name).or_insert_with(|| json!({})))
    }

    /// A `config` field, if set.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.document.get("config").and_then(|c| c.get(name))
    }

    /// A `config` field that is a list of strings (`Shell`, `OnBuild`).
    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        strings(self.field(name)?)
    }

    /// The `Env` list as name/value pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .unwrap_or_default()
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (pair, String::new()),
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

    /// The `rootfs.diff_ids` the config lists.
    pub fn diff_ids(&self) -> Vec<String> {
        self.document
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(strings)
            .unwrap_or_default()
    }

    /// Write the config and manifest into `layout`, with `created` as the
    /// image's time; returns the manifest's descriptor (not yet in the
    /// index: see [`ImageLayout::tag`]).
    pub fn write(&self, layout: &ImageLayout, created: &str) -> Result<Descriptor, OciError> {
        let mut document = self.document.clone();
        document.insert("created".into(), json!(created));
        let diff_ids: Vec<Value> = self.layers.iter().map(|l| json!(l.diff_id)).collect();
        document.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let config_bytes = serde_json::to_vec(&document)
            .map_err(|e| OciError::Inconsistent(format!("image config: {e}")))?;
        let config = layout.write_descriptor(MediaType::ImageConfig, &config_bytes)?;
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
            .map_err(|e| OciError::Inconsistent(format!("image manifest: {e}")))?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| OciError::Inconsistent(format!("image manifest: {e}")))?;
        layout.write_descriptor(MediaType::ImageManifest, &manifest_bytes)
    }
}

/// Write an OCI image index naming one image per platform (a
/// multi-platform image, as `buildx --platform a,b` makes), and return its
/// descriptor. Each entry says its platform, so a client picks its own.
pub fn write_index(
    layout: &ImageLayout,
    images: &[(Platform, Descriptor)],
) -> Result<Descriptor, OciError> {
    let manifests = images
        .iter()
        .map(|(platform, descriptor)| {
            let mut entry = serde_json::to_value(descriptor)
                .map_err(|e| OciError::Inconsistent(format!("image index: {e}")))?;
            let mut named = json!({"architecture": platform.architecture, "os": platform.os});
            if let Some(variant) = &platform.variant {
                named["variant"] = json!(variant);
            }
            entry["platform"] = named;
            Ok(entry)
        })
        .collect::<Result<Vec<Value>, OciError>>()?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| OciError::Inconsistent(format!("image index: {e}")))?;
    layout.write_descriptor(MediaType::ImageIndex, &bytes)
}

/// `value` made an object if it is not one.
fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    value.as_object_mut().expect("just made an object")
}

/// The strings of a JSON list (others left out), if it is a list.
fn strings(value: &Value) -> Option<Vec<String>> {
    Some(
        value
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`), the
/// form of a config's `created` and its history's times.
pub fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_env() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let mut image = empty(&Platform::parse("linux/arm64/v8").unwrap());
        assert_eq!(image.document["variant"], "v8");
        image.set_env("A", "1");
        image.set_env("PATH", "/bin");
        assert_eq!(
            image.env(),
            [("PATH".into(), "/bin".into()), ("A".into(), "1".into())]
        );
        image.config_object("Labels").insert("k".into(), json!("v"));
        assert_eq!(image.field("Labels").unwrap()["k"], "v");
    }
}
