//! The `docker save` tar (docker-archive): what `docker load` and
//! `podman load` read. Uncompressed layer tars, the config, and
//! `manifest.json` with the repository tags.

use std::io::{Read, Write};
use std::path::Path;

use crate::OciError;
use crate::archive;
use crate::error::io;
use crate::image::Image;
use crate::layout::ImageLayout;
use crate::spec::{Descriptor, ImageManifest};

/// Write `image`, whose manifest `manifest` is in `layout` with all its
/// layers, as a docker-archive at `path`, tagged `repo_tags`. The file is
/// written beside `path` and renamed into place, so a failure leaves
/// nothing behind.
pub fn write(
    image: &Image,
    manifest: &Descriptor,
    layout: &ImageLayout,
    repo_tags: &[String],
    path: &Path,
) -> Result<(), OciError> {
    let staging = kiln_sdk::files::partial_path(path);
    let result = write_to(image, manifest, layout, repo_tags, &staging)
        .and_then(|()| std::fs::rename(&staging, path).map_err(io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result
}

fn write_to(
    image: &Image,
    manifest: &Descriptor,
    layout: &ImageLayout,
    repo_tags: &[String],
    staging: &Path,
) -> Result<(), OciError> {
    let file = std::fs::File::create(staging).map_err(io(staging))?;
    let mut out = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let manifest_doc: ImageManifest = serde_json::from_slice(&layout.read_blob(manifest)?)
        .map_err(|e| OciError::Inconsistent(format!("re-reading the manifest: {e}")))?;
    let config = layout.read_blob(manifest_doc.config())?;
    let config_name = format!("{}.json", manifest_doc.config().digest().digest());
    append(
        &mut out,
        &config_name,
        config.len() as u64,
        &mut &config[..],
    )
    .map_err(io(staging))?;
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
            .map_err(io(staging))?,
        };
        let mut tar = archive::decompressed(layout.open_blob(&layer.descriptor)?, &what, None)?;
        append(&mut out, &name, size, &mut tar).map_err(io(staging))?;
        layer_names.push(name);
    }
    let index = serde_json::json!([{
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
    .map_err(io(staging))?;
    let mut writer = out.into_inner().map_err(io(staging))?;
    writer.flush().map_err(io(staging))?;
    writer.get_ref().sync_all().map_err(io(staging))
}

fn append(
    out: &mut tar::Builder<impl Write>,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_entry_type(tar::EntryType::Regular);
    out.append_data(&mut header, name, data)
}
