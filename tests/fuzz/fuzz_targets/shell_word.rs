//! `kiln_dockerfile::shell`: word expansion never panics or loops, for
//! either escape token, with an environment of set, empty and unset names.
//!
//! Input: byte 0 picks the escape token (bit 0: `\` or `` ` ``); the rest
//! is UTF-8, split at the first NUL into the word and an environment of
//! `NAME=value` lines added to a fixed base.
#![no_main]

use kiln_dockerfile::shell::{process_word, process_words};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let escape = if first & 1 == 0 { '\\' } else { '`' };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (word, extra) = text.split_once('\0').unwrap_or((text, ""));
    // BuildKit's lexer test environment, then the input's own variables.
    let mut env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("SPACED", " a  b\tc "),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for line in extra.lines() {
        if let Some((name, value)) = line.split_once('=') {
            env.push((name.to_owned(), value.to_owned()));
        }
    }
    let one = process_word(word, &env, escape);
    let many = process_words(word, &env, escape);
    if let Err(error) = &one {
        error.to_string();
    }
    // Splitting into words does not change whether the word is valid.
    assert_eq!(one.is_ok(), many.is_ok(), "{one:?} vs {many:?}");
    // Without quotes, escapes or `$`, a word is left as it is.
    if !word.contains(['\'', '"', '$', escape]) {
        assert_eq!(one.as_deref(), Ok(word));
    }
});
