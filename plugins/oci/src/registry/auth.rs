//! Registry authentication: `WWW-Authenticate` challenges, Basic, and
//! Bearer tokens from the challenge's realm.

use serde::Deserialize;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercase (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters, keys lowercase.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a `WWW-Authenticate` value: several challenges, quoted values
/// with `\"` escapes, unquoted tokens, any case of scheme.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    let skip = |i: &mut usize, pred: &dyn Fn(char) -> bool| {
        while *i < chars.len() && pred(chars[*i]) {
            *i += 1;
        }
    };
    while i < chars.len() {
        skip(&mut i, &|c| c == ',' || c.is_whitespace());
        let start = i;
        skip(&mut i, &|c| !(c == ',' || c == '=' || c.is_whitespace()));
        let token: String = chars[start..i].iter().collect();
        if token.is_empty() {
            break;
        }
        let after_space = i;
        skip(&mut i, &|c| c == ' ' || c == '\t');
        if i < chars.len() && chars[i] == '=' && !challenges.is_empty() {
            // A parameter of the current challenge.
            i += 1;
            skip(&mut i, &|c| c == ' ' || c == '\t');
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                let v = i;
                skip(&mut i, &|c| c != ',' && !c.is_whitespace());
                value = chars[v..i].iter().collect();
            }
            challenges
                .last_mut()
                .expect("checked above")
                .params
                .push((token.to_ascii_lowercase(), value));
        } else {
            i = after_space;
            challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    challenges
}

/// A token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// Docker's field.
    #[serde(default)]
    pub token: Option<String>,
    /// OAuth2's field.
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    /// The token, whichever field carries it.
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token).filter(|t| !t.is_empty())
    }
}

/// `application/x-www-form-urlencoded` escaping.
pub fn form_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_world_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));

        let c = parse_challenges(
            r#"basic Realm="Registry \"Realm\"", Bearer realm=https://x/t,service=s"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some(r#"Registry "Realm""#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn form_escapes() {
        assert_eq!(
            form_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
