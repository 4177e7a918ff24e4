//! Making untrusted text safe for line-oriented sinks: log lines, RFC 5424 syslog messages and
//! collectors that split records on line feeds. A value typed by anyone (a login name, say) can
//! reach those sinks as an alert's subject or an audit record's field; a raw CR or LF in it would
//! forge a record of its own.

use std::borrow::Cow;

/// True for characters a line-oriented sink may take as a break or an instruction: C0 and C1
/// controls, DEL, and the Unicode line and paragraph separators.
pub fn is_line_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` with each line-unsafe character written as `\u{XXXX}` (so `a\nb` becomes `a\u{000a}b`):
/// visible, one line, and still telling what was typed.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_line_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_line_unsafe(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_line_separators_are_written_out() {
        assert_eq!(escape_controls("bob\nfake"), "bob\\u{000a}fake");
        assert_eq!(escape_controls("a\r\u{85}\u{2028}\u{7f}b"), "a\\u{000d}\\u{0085}\\u{2028}\\u{007f}b");
        assert!(matches!(escape_controls("plain é"), Cow::Borrowed("plain é")));
    }
}
