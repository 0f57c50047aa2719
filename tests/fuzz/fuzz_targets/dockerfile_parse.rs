//! `kiln_dockerfile::parser`: any UTF-8 text either parses or is refused
//! with an error naming a line of the file; a parsed file dumps.
#![no_main]

use kiln_dockerfile::parser::{self, Arg, Node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    for escape in ['\\', '`'] {
        parser::words(text, escape);
    }
    match parser::parse(text) {
        Ok(dockerfile) => {
            assert!(!dockerfile.instructions.is_empty());
            assert!(matches!(dockerfile.escape, '\\' | '`'));
            for node in &dockerfile.instructions {
                assert!(1 <= node.start_line && node.start_line <= node.end_line);
                assert!(node.end_line <= lines);
                check_node(node);
            }
            dockerfile.dump();
        }
        Err(error) => {
            assert!(error.line <= lines);
            error.to_string();
        }
    }
});

/// Keywords are lowercase; nested nodes dump on their own.
fn check_node(node: &Node) {
    assert_eq!(node.instruction, node.original.to_ascii_lowercase());
    for arg in &node.args {
        if let Arg::Instruction(nested) = arg {
            check_node(nested);
        }
    }
    node.dump();
}
