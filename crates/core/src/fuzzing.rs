//! Entry points shared by the fuzz targets in `fuzz/` and their stable
//! property-test twins, so both exercise exactly the same code.

use crate::key::StreamKey;

/// Parses untrusted text as a stream key and checks what an accepted key
/// promises. Panics only if a promise is broken.
pub fn stream_key(text: &str) {
    if let Ok(key) = StreamKey::parse(text) {
        for part in [key.app(), key.stream()] {
            assert!(!part.is_empty() && part.len() <= crate::key::MAX_PART_LEN);
            assert!(part != "." && part != "..");
            assert!(!part.contains('/'));
            assert!(!part.chars().any(|c| c.is_control() || c.is_whitespace()));
        }
        assert_eq!(key.as_str(), text);
        assert_eq!(StreamKey::parse(key.as_str()).ok().as_ref(), Some(&key));
    } else if let Err(e) = StreamKey::parse(text) {
        // The error names the input safely: bounded and on one line.
        let msg = e.to_string();
        assert!(msg.len() < 600 && !msg.contains('\n'));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn stream_key_twin_any_text(text in any::<String>()) {
            super::stream_key(&text);
        }

        #[test]
        fn stream_key_twin_key_like_text(text in "[a-z./\\x00-\\x1f \\u{80}-\\u{10ffff}]{0,300}") {
            super::stream_key(&text);
        }
    }
}
