//! COPY and ADD: sources from the build context, another stage or an
//! image, Docker's destination rules, archives extracted by ADD, and
//! files written from here-documents (`COPY <<EOF /dest`).

use std::path::Path;

use kiln_dockerfile::heredoc::{self, Heredoc};
use kiln_dockerfile::instructions::{Copy, Instruction};
use kiln_dockerfile::pattern;
use kiln_oci::archive::{self, Landing};
use kiln_oci::tree::{self, Entry, FileData, Kind, Tree, join};

use super::stage::{Stage, adjust};
use super::{Runner, within};
use kiln_sdk::Error;

impl Runner<'_> {
    /// COPY and ADD: the tree of one layer.
    pub(super) fn copy(
        &mut self,
        stage: &mut Stage,
        node: &Instruction,
        copy: &Copy,
        is_add: bool,
        vars: &[(String, String)],
    ) -> Result<Tree, Error> {
        let expand = |word: &Option<String>| {
            word.as_deref()
                .map(|w| self.expand(node, w, vars))
                .transpose()
        };
        let from = expand(&copy.from)?;
        let chown = expand(&copy.chown)?;
        let chmod = match expand(&copy.chmod)? {
            Some(v) => Some(
                u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| self.error(node, format!("--chmod={v} is not an octal mode")))?,
            ),
            None => None,
        };
        let mut sources = Vec::new();
        for word in &copy.sources {
            sources.push(self.expand(node, word, vars)?);
        }
        let dest = &self.expand(node, &copy.dest, vars)?;
        let owner = match &chown {
            Some(spec) => Some(
                stage
                    .owner(spec, self.build)
                    .map_err(|e| self.error(node, e))?,
            ),
            None => None,
        };
        // The file system `--from` names, read once for all sources.
        let view: Option<Tree> = match &from {
            Some(name) => Some(self.source_stage(node, name)?.view(self.build)?.clone()),
            None => None,
        };
        // Resolve every source (name as written, target once symlinks are
        // followed, entry) before deciding what the destination is.
        let mut found: Vec<(String, String, Entry)> = Vec::new();
        for source in &sources {
            if is_add
                && ["http://", "https://", "git@"]
                    .iter()
                    .any(|p| source.starts_with(p))
            {
                return Err(self.error(node, format!(
                    "ADD from a URL ({source}) is not supported; download it in an earlier step and COPY it"
                )));
            }
            match &view {
                Some(view) => {
                    let lookup = |p: &str| -> Result<Option<Entry>, Error> {
                        Ok(if p.is_empty() {
                            Some(Entry::dir(0))
                        } else {
                            view.get(p).cloned()
                        })
                    };
                    let wanted = kiln_oci::path::clean_inside_root(source);
                    let names: Vec<String> = if pattern::has_wildcards(&wanted) {
                        view.iter()
                            .filter(|(p, _)| pattern::matches(&wanted, p).unwrap_or(false))
                            .map(|(p, _)| p.clone())
                            .collect()
                    } else {
                        vec![wanted]
                    };
                    for name in names {
                        if let (target, Some(entry)) = tree::resolve(&name, true, lookup)? {
                            found.push((name, target, entry));
                        }
                    }
                    if found.is_empty() {
                        return Err(self.error(
                            node,
                            format!(
                                "`{source}` does not exist in {}",
                                from.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                }
                None => {
                    for item in self
                        .build
                        .context
                        .sources(source)
                        .map_err(|e| self.error(node, e))?
                    {
                        found.push((item.path, item.target, item.entry));
                    }
                }
            }
        }
        if found.len() + copy.documents.len() > 1 && !dest.ends_with('/') {
            return Err(self.error(
                node,
                format!("with more than one source file the destination must be a directory and end with a /: write `{dest}/`"),
            ));
        }
        let dest_is_dir = dest.ends_with('/');
        // Symlinks in the image lead the destination (`/bin` → `usr/bin`).
        let (dest_path, dest_entry) = stage.resolve(&within(&stage.workdir(), dest), self.build)?;
        // Where a file named `name` lands: in the destination directory,
        // or at the destination itself.
        let file_target = |name: &str| {
            if dest_is_dir || dest_path.is_empty() || dest_entry.as_ref().is_some_and(Entry::is_dir)
            {
                join(&dest_path, name)
            } else {
                dest_path.clone()
            }
        };
        let mut layer = Tree::default();
        for (path, source, entry) in found {
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            if entry.is_dir() {
                // A directory's contents are copied, not the directory.
                let below: Vec<(String, Entry)> = match &view {
                    Some(view) => view
                        .below(&source)
                        .map(|(p, e)| (p.clone(), e.clone()))
                        .collect(),
                    None => self
                        .build
                        .context
                        .walk(&source)
                        .map_err(|e| self.error(node, e))?
                        .into_iter()
                        .map(|f| (f.path, f.entry))
                        .collect(),
                };
                if !dest_path.is_empty() {
                    stage.add_parents(&mut layer, &format!("{dest_path}/x"), self.build, owner)?;
                }
                let prefix_len = if source.is_empty() {
                    0
                } else {
                    source.len() + 1
                };
                for (inner, entry) in below {
                    let target = join(&dest_path, &inner[prefix_len..]);
                    layer.insert(target, adjust(entry, owner, chmod));
                }
                continue;
            }
            let target = file_target(&name);
            if is_add
                && view.is_none()
                && let Kind::File(data) = &entry.kind
                && archive::is_archive(Path::new(&data.source))?
            {
                let file = std::fs::File::open(&data.source)
                    .map_err(|e| Error::io(Path::new(&data.source), e))?;
                // An archive's destination is always a directory.
                let dir = dest_path.clone();
                let mut extracted = Tree::default();
                archive::extract(
                    file,
                    &path,
                    &Landing {
                        dest: &dir,
                        whiteouts: false,
                        strict: true,
                        epoch: self.build.epoch,
                        identity: &data.identity,
                        contents: true,
                    },
                    &mut extracted,
                    self.build.scratch,
                )
                .map_err(|e| self.error(node, e))?;
                stage.add_parents(&mut layer, &join(&dir, "x"), self.build, owner)?;
                for (p, e) in extracted.iter() {
                    if layer
                        .get(p)
                        .is_none_or(|existing| !existing.is_dir() || !e.is_dir())
                    {
                        layer.insert(p.clone(), adjust(e.clone(), owner, None));
                    }
                }
                continue;
            }
            stage.add_parents(&mut layer, &target, self.build, owner)?;
            layer.insert(target, adjust(entry, owner, chmod));
        }
        // As BuildKit, documents come after the sources and are never
        // extracted, whatever they hold.
        for document in &copy.documents {
            let name = heredoc::file_name(&document.name).map_err(|e| self.error(node, e))?;
            let entry = self.document(node, document, vars)?;
            let target = file_target(name);
            stage.add_parents(&mut layer, &target, self.build, owner)?;
            layer.insert(target, adjust(entry, owner, chmod));
        }
        Ok(layer)
    }

    /// A here-document as a file (mode 0644, owned by root, as BuildKit
    /// writes it): its body, expanded unless the delimiter was quoted,
    /// written to the build's scratch directory under its digest, which
    /// is also its identity for the layer cache.
    fn document(
        &self,
        node: &Instruction,
        document: &Heredoc,
        vars: &[(String, String)],
    ) -> Result<Entry, Error> {
        let mut body = document.body();
        if document.expand {
            body = heredoc::expand_body(&body, &vars)
                .map_err(|e| self.error(node, format!("here-document `{}`: {e}", document.name)))?;
        }
        let digest = kiln_sdk::digest::sha256_oci(body.as_bytes());
        let hex = digest.trim_start_matches("sha256:");
        let path = self.build.scratch.dir().join(format!("heredoc-{hex}"));
        std::fs::write(&path, &body).map_err(|e| Error::io(&path, e))?;
        Ok(Entry {
            kind: Kind::File(FileData {
                source: path.to_string_lossy().into_owned(),
                size: body.len() as u64,
                identity: format!("heredoc {digest}"),
            }),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: self.build.epoch,
        })
    }
}
