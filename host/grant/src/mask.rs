//! Secret masking: every string kiln prints or returns passes through a
//! [`SecretMask`] holding the values of the secrets in play, so that a
//! secret never reaches a log, an error or an output.

/// Replaces every secret value in text with `[masked]`.
///
/// Longer secrets are replaced first so a secret that contains another is
/// not left half-visible.
#[derive(Debug, Clone, Default)]
pub struct SecretMask {
    values: Vec<String>,
}

/// What a masked secret is replaced with.
pub const MASK: &str = "[masked]";

impl SecretMask {
    /// Mask `value` from now on. Empty values are ignored: masking them would
    /// garble every line.
    pub fn add(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// The length in bytes of the longest secret (0 when there is none).
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    /// A position at or before `cut` where `bytes` can be split without
    /// splitting a secret, so that each part can be masked on its own.
    /// `bytes` must hold at least [`SecretMask::longest`] bytes past `cut`
    /// (or all there is) for a secret that starts before `cut` to be seen.
    /// When a secret longer than `cut` starts at 0, the split falls after
    /// it instead.
    pub fn safe_cut(&self, bytes: &[u8], mut cut: usize) -> usize {
        // The first secret found across the cut moves it to where that
        // secret starts; repeat until none crosses (the cut only moves
        // back, so this ends).
        let crossing = |cut: usize| {
            self.values.iter().find_map(|value| {
                let value = value.as_bytes();
                let from = cut.saturating_sub(value.len().saturating_sub(1));
                (from..cut)
                    .find(|&start| start + value.len() > cut && bytes[start..].starts_with(value))
                    .map(|start| (start, value.len()))
            })
        };
        while let Some((start, len)) = crossing(cut) {
            if start == 0 {
                return len.min(bytes.len());
            }
            cut = start;
        }
        cut
    }

    /// `text` with every secret replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_secret_first() {
        let mut mask = SecretMask::default();
        mask.add("abc");
        mask.add("abcdef");
        mask.add("");
        assert_eq!(mask.apply("x abcdef y abc z"), "x [masked] y [masked] z");
        assert_eq!(mask.apply("nothing here"), "nothing here");
    }

    #[test]
    fn cuts_never_split_a_secret() {
        let mut mask = SecretMask::default();
        mask.add("s3cr3t-value");
        let text = b"aaaaaaaas3cr3t-valuebbbb";
        // A cut inside the secret moves to where it starts.
        assert_eq!(mask.safe_cut(text, 12), 8);
        assert_eq!(mask.safe_cut(text, 8), 8);
        assert_eq!(mask.safe_cut(text, 20), 20);
        // A secret at the start, longer than the cut, is kept whole.
        assert_eq!(mask.safe_cut(b"s3cr3t-value...", 4), 12);
        assert_eq!(mask.longest(), 12);
    }
}
