//! Names that come from a server or a listing are data, never paths or terminal input.
//!
//! One rule turns any database name into the part of a file name that stands for it
//! (`encode`), and `decode` takes it back: bytes outside `A-Z a-z 0-9 . _ - $` become `%XX`
//! (`a/b` → `a%2Fb`, a newline → `%0A`), and the names `.` and `..` are encoded whole. Every
//! name a backup.conf line can spell maps to itself, so existing file names and the bash
//! version's layout stay as they are. `printable` escapes control characters (and the
//! invisible bidirectional overrides) for logs, notifications and terminals, and `join_under`
//! is the one join of a root and a relative path that refuses to leave the root.
//!
//! Written by hand: percent-encoding with our own safe set is a dozen lines, and the crates
//! for it encode per URL component rules that differ from ours (`$`, `.` and `..`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// The bytes a file-name part keeps as they are: the spec grammar's database characters.
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'$')
}

/// The file-name part for a name given as bytes. Never contains `/`, is never `.` or `..`,
/// and is the name itself when every byte is safe.
pub fn encode_bytes(name: &[u8]) -> String {
    let whole = matches!(name, b"." | b"..");
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if is_safe(b) && !whole {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The file-name part for `name` (`encode_bytes` of its UTF-8 bytes).
pub fn encode(name: &str) -> String {
    encode_bytes(name.as_bytes())
}

/// The bytes `encode_bytes` was given, or `None` for a part it cannot have written (a `%` not
/// followed by two upper-case hex digits, or an encoded byte that would have been kept). Also
/// takes a whole core (`host-%2E`), where the encoded `.` is not the whole part.
pub fn decode_bytes(part: &str) -> Option<Vec<u8>> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                return None;
            }
            let b = u8::from_str_radix(hex, 16).ok()?;
            // Only `.` is ever encoded though safe (the names `.` and `..`, also inside a core).
            if is_safe(b) && b != b'.' {
                return None;
            }
            out.push(b);
            i += 3;
        } else if is_safe(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// The name a file-name part stands for: decoded when it is one of ours, else the part as it
/// is (a file another tool named, e.g. the bash version with a `%` in a name).
pub fn decode(part: &str) -> String {
    decode_bytes(part).and_then(|b| String::from_utf8(b).ok()).unwrap_or_else(|| part.to_string())
}

/// Characters that would act on a terminal or reorder what a reader sees.
fn is_hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `name` with control characters written as escapes (`\n`, `\u{1b}`), for logs,
/// notifications and terminals. Names without them are returned as they are.
pub fn printable(name: &str) -> Cow<'_, str> {
    if !name.chars().any(is_hidden) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.chars().map(|c| if is_hidden(c) { c.escape_debug().to_string() } else { c.to_string() }).collect())
}

/// A path that would have left its root.
#[derive(Debug, thiserror::Error)]
#[error("refusing the path {rel:?} under {root}: it would leave that folder (a bug: please report it)")]
pub struct Escape {
    pub root: String,
    pub rel: String,
}

/// `root` joined with `rel`, which must be relative and made of plain names only (no `..`,
/// `.`, root or drive). With names encoded by `encode` this cannot fail; when it does, it is
/// a bug that must be loud rather than a file written elsewhere.
///
/// # Errors
/// `rel` is absolute, empty, or has a component other than a plain name.
pub fn join_under(root: &Path, rel: impl AsRef<Path>) -> Result<PathBuf, Escape> {
    let rel = rel.as_ref();
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || rel.as_os_str().is_empty() {
        return Err(Escape { root: root.display().to_string(), rel: rel.display().to_string() });
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_become_one_plain_part() {
        assert_eq!(encode("../../../../pwned"), "..%2F..%2F..%2F..%2Fpwned");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("nl\nx"), "nl%0Ax");
        assert_eq!(encode("."), "%2E");
        assert_eq!(encode(".."), "%2E%2E");
        assert_eq!(encode("x<script>"), "x%3Cscript%3E");
        assert_eq!(encode("données"), "donn%C3%A9es");
        assert_eq!(encode("100%"), "100%25");
        for safe in ["my_db", "tob", "a.b-c", "$user", "...", "Shop2"] {
            assert_eq!(encode(safe), safe);
        }
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("host-%2E%2E"), "host-..");
        assert_eq!(decode("100%"), "100%", "not one of ours: kept as it is");
        assert_eq!(decode_bytes("a%2fb"), None, "lower-case hex is not ours");
        assert_eq!(decode_bytes("%61"), None, "an encoded safe byte is not ours");
    }

    #[test]
    fn printable_escapes_what_acts_on_a_terminal() {
        assert_eq!(printable("shop"), "shop");
        assert_eq!(printable("nl\nx"), "nl\\nx");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(printable("données"), "données");
    }

    #[test]
    fn joins_stay_under_the_root() {
        let root = Path::new("/backups");
        assert_eq!(
            join_under(root, "daily/2026-12-05/x.sql.gz").unwrap(),
            Path::new("/backups/daily/2026-12-05/x.sql.gz")
        );
        // (`a/./b` is `a/b` to the standard library: harmless, and accepted.)
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "./x", "a/.."] {
            assert!(join_under(root, bad).is_err(), "{bad}");
        }
    }

    /// Every name the spec grammar accepts (other than `.` and `..`) maps to itself.
    fn spec_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._$-]{1,63}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn the_rule_round_trips_and_never_makes_a_path(name in proptest::collection::vec(any::<u8>(), 0..80)) {
            let part = encode_bytes(&name);
            prop_assert!(!part.contains('/') && part != "." && part != "..");
            prop_assert!(part.bytes().all(|b| is_safe(b) || b == b'%'));
            prop_assert_eq!(decode_bytes(&part), Some(name));
        }

        #[test]
        fn spec_names_are_their_own_file_names(name in spec_name()) {
            prop_assert_eq!(encode(&name), name.clone());
            prop_assert_eq!(decode(&name), name);
        }

        #[test]
        fn printable_has_no_control_characters(name in any::<String>()) {
            prop_assert!(!printable(&name).chars().any(is_hidden));
        }
    }
}
