//! What a registry sends back, as `kiln_oci::registry` reads it:
//! `WWW-Authenticate` challenges (and the token URL built from a Bearer
//! challenge), `Location` headers, token responses, credentials JSON, and
//! manifests and indexes (`oci_spec` types through `serde_json`, as
//! `pull`/`push` parse them), with the blob paths their digests name.
//!
//! The whole input is tried as each of these.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use kiln_oci::ImageLayout;
use kiln_oci::credential::Credential;
use kiln_oci::registry::auth::{TokenResponse, form_escape, parse_challenges};
use kiln_oci::registry::{Registry, pull_scope, with_query};
use kiln_oci::spec::{ImageIndex, ImageManifest};
use libfuzzer_sys::fuzz_target;

fn layout() -> &'static ImageLayout {
    static LAYOUT: OnceLock<(tempfile::TempDir, ImageLayout)> = OnceLock::new();
    &LAYOUT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let layout = ImageLayout::open_or_create(dir.path().join("image")).unwrap();
            (dir, layout)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        headers(text);
    }
    documents(data);
});

fn headers(text: &str) {
    let registry = Registry::new("registry.example.com", false, None);
    for challenge in parse_challenges(text) {
        assert!(!challenge.scheme.is_empty());
        assert_eq!(challenge.scheme, challenge.scheme.to_ascii_lowercase());
        for (key, _) in &challenge.params {
            assert_eq!(*key, key.to_ascii_lowercase());
        }
        // The token request `fetch_token` builds from a Bearer challenge.
        if let Some(realm) = challenge.param("realm") {
            let mut url = registry.resolve(&registry.url(""), realm);
            if let Some(service) = challenge.param("service") {
                url = with_query(&url, "service", service);
            }
            let scope = challenge.param("scope").unwrap_or("");
            with_query(&url, "scope", scope);
        }
    }
    // A redirect's `Location`, against the URLs the client requests.
    for base in [
        registry.url(""),
        registry.url("library/x/manifests/latest"),
        registry.url("a/blobs/uploads/?digest=sha256:0"),
    ] {
        let resolved = registry.resolve(&base, text);
        if !text.starts_with("http://") && !text.starts_with("https://") {
            assert!(
                resolved.starts_with("https://registry.example.com"),
                "{resolved:?}"
            );
        }
    }
    let escaped = form_escape(text);
    assert_eq!(percent_decode(&escaped), text.as_bytes());
    pull_scope(text);
}

fn documents(data: &[u8]) {
    if let Ok(token) = serde_json::from_slice::<TokenResponse>(data) {
        token.into_token();
    }
    if let Ok(credential) = serde_json::from_slice::<Credential>(data) {
        credential.basic_header();
    }
    // `fetch_manifest` reads the declared media type from any JSON.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = value["mediaType"].as_str();
    }
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        for descriptor in index.manifests() {
            check_blob_path(descriptor.digest().as_ref());
            if let Some(platform) = descriptor.platform() {
                // `select_platform` compares these.
                let _ = (
                    platform.os().to_string(),
                    platform.architecture().to_string(),
                );
            }
        }
        let bytes = serde_json::to_vec(&index).unwrap();
        let again: ImageIndex = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(again, index);
    }
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        check_blob_path(manifest.config().digest().as_ref());
        for layer in manifest.layers() {
            check_blob_path(layer.digest().as_ref());
        }
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let again: ImageManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(again, manifest);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_blob_path(text);
    }
}

/// A digest from a document names a file directly under `blobs/ALG/`, or
/// is refused.
fn check_blob_path(digest: &str) {
    let layout = layout();
    let Ok(path) = layout.blob_path(digest) else {
        return;
    };
    let blobs = layout.root().join("blobs");
    let relative = path.strip_prefix(&blobs).expect("blob path outside blobs/");
    assert_eq!(relative.components().count(), 2, "{path:?}");
    assert!(
        relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))),
        "{path:?}"
    );
    let _ = Path::new(&path).exists();
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            assert!(bytes[i].is_ascii_alphanumeric() || b"-_.~".contains(&bytes[i]));
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
