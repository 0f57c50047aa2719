//! The pipeline file (`kiln.yml`) exactly as written: serde types with
//! `deny_unknown_fields` and source positions, so that every later check can
//! point at the line it is about.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::rules::When;
use kiln_grant::StepGrant;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Stage names, in the order they run.
    #[serde(default)]
    pub stages: Vec<Spanned<String>>,
    /// Pipeline variables.
    #[serde(default)]
    pub variables: IndexMap<String, Spanned<VariableDecl>>,
    /// Named steps, in file order.
    pub steps: IndexMap<String, Spanned<StepDecl>>,
}

/// One variable: a plain value, or `{ value, secret, description }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableDecl {
    /// The value in the file; the process environment overrides it.
    pub value: Option<String>,
    /// Masked in every output, like `CI_REGISTRY_PASSWORD`.
    pub secret: bool,
    /// For humans.
    pub description: Option<String>,
}

/// One step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDecl {
    /// The stage it belongs to.
    pub stage: Spanned<String>,
    /// The plugin: a built-in name or a `.wasm` path.
    #[serde(default)]
    pub uses: Option<Spanned<String>>,
    /// Plugin inputs; values may contain `${VAR}`.
    #[serde(default)]
    pub with: IndexMap<String, Spanned<Scalar>>,
    /// The step's grant.
    #[serde(default)]
    pub allow: Option<Spanned<AllowDecl>>,
    /// Steps whose artifacts this one needs; default: every step of the
    /// earlier stages.
    #[serde(default)]
    pub needs: Option<Vec<Spanned<String>>>,
    /// What the step hands on.
    #[serde(default)]
    pub artifacts: Option<ArtifactsDecl>,
    /// What the step keeps between runs.
    #[serde(default)]
    pub cache: Option<CacheDecl>,
    /// Host shell commands, for work that cannot be sandboxed.
    #[serde(default)]
    pub run: Option<Spanned<Commands>>,
    /// GitLab's `rules:`: whether the step takes part in a run.
    #[serde(default)]
    pub rules: Option<Spanned<Vec<Spanned<RuleDecl>>>>,
}

/// One entry of `rules:`, in GitLab's syntax.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDecl {
    /// The condition; without it the rule always matches.
    #[serde(rename = "if", default)]
    pub condition: Option<Spanned<String>>,
    /// What a match decides; default `on_success`.
    #[serde(default)]
    pub when: Option<When>,
}

/// `allow:` of a step: the foundation's [`StepGrant`], with directories
/// and hosts kept as written so they may name variables
/// (`net: [$CI_REGISTRY]`).
pub type AllowDecl = StepGrant<Spanned<String>, Spanned<String>>;

/// `artifacts:` of a step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsDecl {
    /// Globs of files and directories to hand on (GitLab semantics).
    pub paths: Vec<String>,
    /// Globs of files to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A name for the archive in GitLab's UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `cache:` of a step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDecl {
    /// The cache key; may contain `${VAR}` and `${hash:FILE}`.
    pub key: Spanned<String>,
    /// Directories, relative to the project, to restore and save.
    pub paths: Vec<String>,
}

/// A scalar written as a string, number or boolean, kept as text (YAML
/// `version: 1.0` is the text "1.0" to a CI user, not a float).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub String);

/// `run:` as one command or a list of commands.
#[derive(Debug, Clone, PartialEq)]
pub struct Commands(pub Vec<String>);

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for VariableDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DeclVisitor;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            #[serde(default)]
            value: Option<Scalar>,
            #[serde(default)]
            secret: bool,
            #[serde(default)]
            description: Option<String>,
        }

        impl<'de> Visitor<'de> for DeclVisitor {
            type Value = VariableDecl;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value, or a map with value, secret and description")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VariableDecl, A::Error> {
                let detailed = Detailed::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(VariableDecl {
                    value: detailed.value.map(|s| s.0),
                    secret: detailed.secret,
                    description: detailed.description,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VariableDecl, E> {
                ScalarVisitor.visit_str(v).map(plain)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<VariableDecl, E> {
                ScalarVisitor.visit_bool(v).map(plain)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VariableDecl, E> {
                ScalarVisitor.visit_i64(v).map(plain)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VariableDecl, E> {
                ScalarVisitor.visit_u64(v).map(plain)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VariableDecl, E> {
                ScalarVisitor.visit_f64(v).map(plain)
            }
        }

        fn plain(value: Scalar) -> VariableDecl {
            VariableDecl {
                value: Some(value.0),
                secret: false,
                description: None,
            }
        }

        d.deserialize_any(DeclVisitor)
    }
}

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CommandsVisitor;

        impl<'de> Visitor<'de> for CommandsVisitor {
            type Value = Commands;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command or a list of commands")
            }
            // `run: true` is the `true` command to a CI user, not a boolean.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Commands, E> {
                ScalarVisitor.visit_str(v).map(one)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Commands, E> {
                ScalarVisitor.visit_bool(v).map(one)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Commands, E> {
                ScalarVisitor.visit_i64(v).map(one)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Commands, E> {
                ScalarVisitor.visit_u64(v).map(one)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Commands, A::Error> {
                let mut commands = Vec::new();
                while let Some(command) = seq.next_element::<Scalar>()? {
                    commands.push(command.0);
                }
                Ok(Commands(commands))
            }
        }

        fn one(command: Scalar) -> Commands {
            Commands(vec![command.0])
        }

        d.deserialize_any(CommandsVisitor)
    }
}
