//! What a `pom.xml` says about its artifact: coordinates, packaging and
//! final name, with `${…}` properties resolved the way Maven resolves them
//! for these fields (`project.*`, the parent's groupId and version,
//! `<properties>`). Errors name the file, line and field.

use std::collections::BTreeMap;

use kiln_sdk::Error;

/// The coordinates and file name of a project's artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pom {
    /// `groupId` (the parent's when the project has none).
    pub group_id: String,
    /// `artifactId`.
    pub artifact_id: String,
    /// `version` (the parent's when the project has none).
    pub version: String,
    /// `packaging` (`jar` by default).
    pub packaging: String,
    /// `build/finalName` (`ARTIFACTID-VERSION` by default).
    pub final_name: String,
}

impl Pom {
    /// The file extension of the packaging's artifact, or `None` for a
    /// packaging that produces none (`pom`).
    pub fn extension(&self) -> Option<&'static str> {
        match self.packaging.as_str() {
            "pom" => None,
            "war" => Some("war"),
            "ear" => Some("ear"),
            // jar, maven-plugin, ejb, bundle, ...: a jar.
            _ => Some("jar"),
        }
    }
}

/// Parse `text`, read from `file` (named in errors).
pub fn parse(file: &str, text: &str) -> Result<Pom, Error> {
    let document = roxmltree::Document::parse(text)
        .map_err(|e| Error::invalid_input(format!("{file}: not well-formed XML: {e}")))?;
    let project = document.root_element();
    if project.tag_name().name() != "project" {
        return Err(Error::invalid_input(format!(
            "{file}: the root element is <{}>, not <project>",
            project.tag_name().name()
        )));
    }
    let parent = child(project, "parent");

    let mut properties: BTreeMap<String, String> = BTreeMap::new();
    if let Some(props) = child(project, "properties") {
        for p in props.children().filter(|n| n.is_element()) {
            properties.insert(
                p.tag_name().name().to_owned(),
                p.text().unwrap_or_default().trim().to_owned(),
            );
        }
    }
    let line = |node: Node<'_, '_>| document.text_pos_at(node.range().start).row;
    let required = |name: &str| {
        text_of(project, name)
            .or_else(|| parent.and_then(|p| text_of(p, name)))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "{file}: <project> has no <{name}> (and no <parent> gives one); add <{name}>…</{name}>"
                ))
            })
    };
    let (group_id, group_node) = required("groupId")?;
    let (artifact_id, artifact_node) = text_of(project, "artifactId").ok_or_else(|| {
        Error::invalid_input(format!(
            "{file}: <project> has no <artifactId>; add <artifactId>…</artifactId>"
        ))
    })?;
    let (version, version_node) = required("version")?;
    let packaging = text_of(project, "packaging");
    let final_name = child(project, "build").and_then(|b| text_of(b, "finalName"));

    // Properties Maven offers for these fields; user properties may use
    // them and each other.
    let mut scope = properties.clone();
    if let Some(p) = parent {
        for field in ["groupId", "version", "artifactId"] {
            if let Some((value, _)) = text_of(p, field) {
                scope.insert(format!("project.parent.{field}"), value.clone());
                scope.insert(format!("parent.{field}"), value);
            }
        }
    }
    let resolve = |value: &str, node: Node<'_, '_>, scope: &BTreeMap<String, String>| {
        interpolate(value, scope).map_err(|name| {
            Error::invalid_input(format!(
                "{file}:{}: <{}>{value}</{}>: the property ${{{name}}} is not defined; define it in <properties>",
                line(node),
                node.tag_name().name(),
                node.tag_name().name()
            ))
        })
    };
    let group_id = resolve(&group_id, group_node, &scope)?;
    scope.insert("project.groupId".into(), group_id.clone());
    let artifact_id = resolve(&artifact_id, artifact_node, &scope)?;
    scope.insert("project.artifactId".into(), artifact_id.clone());
    let version = resolve(&version, version_node, &scope)?;
    scope.insert("project.version".into(), version.clone());
    for alias in ["groupId", "artifactId", "version"] {
        let value = scope[&format!("project.{alias}")].clone();
        scope.insert(format!("pom.{alias}"), value);
    }
    let packaging = match packaging {
        Some((value, node)) => resolve(&value, node, &scope)?,
        None => "jar".to_owned(),
    };
    let final_name = match final_name {
        Some((value, node)) => resolve(&value, node, &scope)?,
        None => format!("{artifact_id}-{version}"),
    };
    Ok(Pom {
        group_id,
        artifact_id,
        version,
        packaging,
        final_name,
    })
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

/// The child element `name` of `parent`.
fn child<'a, 'i>(parent: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    parent
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The trimmed text of the child element `name`, and the element.
fn text_of<'a, 'i>(parent: Node<'a, 'i>, name: &str) -> Option<(String, Node<'a, 'i>)> {
    child(parent, name).map(|n| (n.text().unwrap_or_default().trim().to_owned(), n))
}

/// Replace every `${name}` in `value` from `scope`, recursively (a
/// property may use others); the error is the first undefined name.
fn interpolate(value: &str, scope: &BTreeMap<String, String>) -> Result<String, String> {
    let mut text = value.to_owned();
    // Bounded: a property defined in terms of itself stops here.
    for _ in 0..16 {
        let Some(start) = text.find("${") else {
            return Ok(text);
        };
        let end = text[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| text[start..].to_owned())?;
        let name = &text[start + 2..end];
        let replacement = scope.get(name).ok_or_else(|| name.to_owned())?;
        text = format!("{}{replacement}{}", &text[..start], &text[end + 1..]);
    }
    Err(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POM: &str = r#"<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <parent>
    <groupId>com.example</groupId>
    <artifactId>parent</artifactId>
    <version>2.1.0</version>
  </parent>
  <artifactId>app</artifactId>
  <properties>
    <revision>${project.parent.version}</revision>
    <suffix>-${revision}</suffix>
  </properties>
  <build>
    <finalName>${project.artifactId}${suffix}</finalName>
  </build>
</project>"#;

    #[test]
    fn inherits_and_interpolates() {
        let pom = parse("pom.xml", POM).unwrap();
        assert_eq!(pom.group_id, "com.example");
        assert_eq!(pom.version, "2.1.0");
        assert_eq!(pom.packaging, "jar");
        assert_eq!(pom.final_name, "app-2.1.0");
        assert_eq!(pom.extension(), Some("jar"));
    }

    #[test]
    fn errors_name_the_file_line_and_property() {
        let broken = POM.replace("${suffix}", "${missing}");
        let error = parse("pom.xml", &broken).unwrap_err().to_string();
        assert!(error.contains("pom.xml:15: <finalName>"), "{error}");
        assert!(error.contains("${missing} is not defined"), "{error}");
        let error = parse("pom.xml", "<project><artifactId>x</artifactId></project>")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no <groupId>"), "{error}");
        assert!(
            parse("pom.xml", "<project>")
                .unwrap_err()
                .to_string()
                .contains("not well-formed")
        );
    }
}
