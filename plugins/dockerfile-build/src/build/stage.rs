//! A stage being built: its image, the files it added, and — read only
//! when an instruction needs them — its base image's files.

use kiln_dockerfile::instructions::Command;
use kiln_oci::archive::{self, Landing};
use kiln_oci::image::{self, Image};
use kiln_oci::tree::{self, Entry, Kind, Tree};
use kiln_oci::{Platform, registry};
use serde_json::Value;

use super::Build;
use kiln_sdk::Error;

/// A stage being built.
#[derive(Clone)]
pub(super) struct Stage {
    pub(super) image: Image,
    /// The files this stage (and stages it derives from) added.
    pub(super) own: Tree,
    /// Base layers whose content is read only when an instruction needs it.
    pub(super) base_layers: usize,
    /// The whole file system, once some instruction needed its files.
    pub(super) view: Option<Tree>,
    /// What is where in the whole file system, without the files' bytes,
    /// once some instruction needed to know (a destination, WORKDIR).
    outline: Option<Tree>,
    /// ARG values in scope.
    pub(super) args: Vec<(String, String)>,
    pub(super) shell: Vec<String>,
    /// Whether CMD was set in this Dockerfile (ENTRYPOINT resets an
    /// inherited one, as Docker does).
    pub(super) cmd_set: bool,
    /// The host's root file system for RUN, once a RUN needed it.
    pub(super) root: super::run::HostRoot,
}

impl Stage {
    pub(super) fn new(image: Image) -> Stage {
        Stage {
            image,
            own: Tree::default(),
            base_layers: 0,
            view: None,
            outline: None,
            args: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set: false,
            root: super::run::HostRoot::default(),
        }
    }

    /// After a RUN, which may have changed any file: the stage's files
    /// are its layers, read again when an instruction needs them.
    pub(super) fn forget_files(&mut self) {
        self.own = Tree::default();
        self.view = None;
        self.outline = None;
        self.base_layers = self.image.layers.len();
    }

    /// A stage the target does not depend on: never built.
    pub(super) fn placeholder() -> Stage {
        Stage::new(image::empty(&Platform {
            os: String::new(),
            architecture: String::new(),
            variant: None,
        }))
    }

    /// Variables for expansion: ARGs, then ENV (which wins).
    pub(super) fn vars(&self) -> Vec<(String, String)> {
        let mut vars = self.args.clone();
        vars.extend(self.image.env());
        vars
    }

    /// ENTRYPOINT/CMD arguments: the exec form as it is, the shell form
    /// run by the stage's SHELL.
    pub(super) fn command(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(args) => args.clone(),
            Command::Shell(line) => {
                let mut command = self.shell.clone();
                command.push(line.clone());
                command
            }
        }
    }

    /// `USER` as set, empty for root.
    pub(super) fn user(&self) -> String {
        self.image
            .field("User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// The working directory, relative to the root.
    pub(super) fn workdir(&self) -> String {
        kiln_oci::path::clean_inside_root(
            self.image
                .field("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/"),
        )
    }

    /// The whole file system: base layers read (once) and own files on top.
    pub(super) fn view(&mut self, build: &Build<'_>) -> Result<&Tree, Error> {
        if self.view.is_none() {
            let mut view = self.base_tree(build, true)?;
            view.overlay(&self.own);
            self.view = Some(view);
        }
        Ok(self.view.as_ref().expect("just set"))
    }

    /// What is where, without the base files' bytes: the view's outline,
    /// from kiln's outline cache in the layout when these base layers
    /// were outlined before (a rebuild then reads no layer at all).
    fn outline(&mut self, build: &Build<'_>) -> Result<&Tree, Error> {
        if let Some(view) = &self.view {
            return Ok(view);
        }
        if self.outline.is_none() {
            let chain: String = self.image.layers[..self.base_layers]
                .iter()
                .map(|l| format!("{}\n", l.diff_id))
                .collect();
            let key = kiln_sdk::digest::sha256_oci(format!("kiln-outline-v1\n{chain}").as_bytes());
            let cached = build
                .layout
                .root()
                .join("kiln-outlines")
                .join(key.trim_start_matches("sha256:"));
            let mut outline = match std::fs::read(&cached)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Tree>(&bytes).ok())
            {
                Some(tree) => tree,
                None => {
                    let tree = self.base_tree(build, false)?;
                    // Only a speed-up: a failed write is a slower rebuild.
                    let _ = save_outline(&cached, &tree);
                    tree
                }
            };
            outline.overlay(&self.own);
            self.outline = Some(outline);
        }
        Ok(self.outline.as_ref().expect("just set"))
    }

    /// The base layers applied in order, with the files' bytes copied to
    /// scratch or (`contents` false) only described.
    fn base_tree(&self, build: &Build<'_>, contents: bool) -> Result<Tree, Error> {
        registry::fetch_layers(
            &self.image.layers[..self.base_layers],
            build.layout,
            build.insecure,
        )?;
        let mut tree = Tree::default();
        for layer in &self.image.layers[..self.base_layers] {
            let what = format!("base layer {}", layer.descriptor.digest());
            let blob = build.layout.open_blob(&layer.descriptor)?;
            archive::extract(
                blob,
                &what,
                &Landing {
                    dest: "",
                    whiteouts: true,
                    strict: false,
                    epoch: u64::MAX,
                    identity: &layer.diff_id,
                    contents,
                },
                &mut tree,
                build.scratch,
            )?;
        }
        Ok(tree)
    }

    /// The entry at `path`, reading base layers only when the stage's own
    /// files do not answer.
    pub(super) fn lookup(&mut self, path: &str, build: &Build<'_>) -> Result<Option<Entry>, Error> {
        if let Some(entry) = self.own.get(path) {
            return Ok(Some(entry.clone()));
        }
        if self.base_layers == 0 {
            return Ok(None);
        }
        Ok(self.outline(build)?.get(path).cloned())
    }

    /// Where `path` leads in this stage's file system, symlinks followed
    /// inside it, and what is there (`None` for a path still to create).
    pub(super) fn resolve(
        &mut self,
        path: &str,
        build: &Build<'_>,
    ) -> Result<(String, Option<Entry>), Error> {
        tree::resolve(path, true, |p| self.lookup(p, build))
    }

    /// Put the parent directories of `path` into `layer`: existing ones
    /// with their metadata, missing ones root-owned 0755 (or `owner`'s).
    pub(super) fn add_parents(
        &mut self,
        layer: &mut Tree,
        path: &str,
        build: &Build<'_>,
        owner: Option<(u64, u64)>,
    ) -> Result<(), Error> {
        for parent in tree::parents(path) {
            if layer.get(parent).is_some() {
                continue;
            }
            let entry = match self.lookup(parent, build)? {
                Some(existing) if existing.is_dir() => existing,
                _ => adjust(Entry::dir(build.epoch), owner, None),
            };
            layer.insert(parent.to_owned(), entry);
        }
        Ok(())
    }

    /// `--chown=USER[:GROUP]` as numbers, names looked up in the stage's
    /// `/etc/passwd` and `/etc/group`.
    pub(super) fn owner(&mut self, spec: &str, build: &Build<'_>) -> Result<(u64, u64), String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, primary) = match user.parse::<u64>() {
            Ok(uid) => (uid, uid),
            Err(_) => {
                let line = self.database("etc/passwd", user, build)?.ok_or_else(|| {
                    format!("--chown: no user `{user}` in the image's /etc/passwd")
                })?;
                let field = |i: usize| line.get(i).and_then(|v| v.parse::<u64>().ok());
                (
                    field(2)
                        .ok_or_else(|| format!("--chown: bad /etc/passwd line for `{user}`"))?,
                    field(3)
                        .ok_or_else(|| format!("--chown: bad /etc/passwd line for `{user}`"))?,
                )
            }
        };
        let gid = match group {
            None => primary,
            Some(group) => match group.parse::<u64>() {
                Ok(gid) => gid,
                Err(_) => self
                    .database("etc/group", group, build)?
                    .and_then(|line| line.get(2).and_then(|v| v.parse().ok()))
                    .ok_or_else(|| {
                        format!("--chown: no group `{group}` in the image's /etc/group")
                    })?,
            },
        };
        Ok((uid, gid))
    }

    /// The `:`-separated fields of `name`'s line in a passwd-style file.
    pub(super) fn database(
        &mut self,
        file: &str,
        name: &str,
        build: &Build<'_>,
    ) -> Result<Option<Vec<String>>, String> {
        // The file's bytes are needed: the full view, not the outline.
        let entry = match self.own.get(file) {
            Some(entry) => Some(entry.clone()),
            None if self.base_layers == 0 => None,
            None => self
                .view(build)
                .map_err(|e| e.to_string())?
                .get(file)
                .cloned(),
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let Kind::File(data) = entry.kind else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&data.source).map_err(|e| format!("/{file}: {e}"))?;
        Ok(text
            .lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields.first().is_some_and(|f| f == name)))
    }
}

/// An entry with `--chown` and `--chmod` applied.
pub(super) fn adjust(mut entry: Entry, owner: Option<(u64, u64)>, chmod: Option<u32>) -> Entry {
    if let Some((uid, gid)) = owner {
        entry.uid = uid;
        entry.gid = gid;
    }
    if let Some(mode) = chmod
        && !matches!(entry.kind, Kind::Symlink(_))
    {
        entry.mode = mode;
    }
    entry
}

/// Write `tree` as the outline cache entry `path`, by rename.
fn save_outline(path: &std::path::Path, tree: &Tree) -> std::io::Result<()> {
    let dir = path.parent().expect("an entry has a directory");
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!("{}outline", kiln_sdk::files::PARTIAL_PREFIX));
    std::fs::write(
        &partial,
        serde_json::to_vec(tree).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&partial, path)
}
