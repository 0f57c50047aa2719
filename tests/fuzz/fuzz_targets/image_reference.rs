//! `kiln_oci::reference`: any text parses to a reference that prints and
//! parses back to itself, or is refused; the validators agree with the
//! distribution spec's grammar, written out here a second way.
#![no_main]

use kiln_oci::Reference;
use kiln_oci::reference::{validate_digest, validate_repository, validate_tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        validate_repository(text).is_ok(),
        is_repository(text),
        "{text:?}"
    );
    assert_eq!(validate_tag(text).is_ok(), is_tag(text), "{text:?}");
    validate_digest(text).ok();

    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    assert!(validate_repository(&reference.repository).is_ok());
    if let Some(tag) = &reference.tag {
        assert!(validate_tag(tag).is_ok());
    }
    if let Some(digest) = &reference.digest {
        assert!(validate_digest(digest).is_ok());
    }
    reference.api_host();
    reference.manifest_reference();
    let printed = reference.to_string();
    assert_eq!(
        Reference::parse(&printed).as_ref(),
        Ok(&reference),
        "{printed:?}"
    );
});

/// `path-component ("/" path-component)*`, each
/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn is_repository(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(is_component)
}

fn is_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut rest = component;
    loop {
        let run = rest.find(|c| !alnum(c)).unwrap_or(rest.len());
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let sep = rest.find(alnum).unwrap_or(rest.len());
        let separator = &rest[..sep];
        if !(matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-')) {
            return false;
        }
        rest = &rest[sep..];
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    chars.next().is_some_and(word)
        && tag.chars().count() <= 128
        && chars.all(|c| word(c) || c == '.' || c == '-')
}
