//! Audit records as they leave the server: one JSON object per line, or RFC 5424 syslog messages
//! (facility 13, "log audit"; the record's `seq` in structured data so a collector can dedupe).
//! Used by `rampart audit export` and `tail`, and by forwarding to a SIEM.

use rampart_core::escape::escape_controls;
use rampart_store::AuditRow;

use crate::http::wire::{rfc3339, AuditView};

/// The private enterprise number RFC 5612 reserves for documentation and examples; Rampart's
/// structured-data id uses it until a number of its own is registered.
const SD_ID: &str = "rampart@32473";
/// Facility 13: log audit.
const FACILITY_LOG_AUDIT: u8 = 13;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_INFO: u8 = 6;
/// RFC 5424: MSGID is at most 32 printable ASCII characters.
const MSGID_CHARS_MAX: usize = 32;
/// RFC 5424: HOSTNAME is at most 255 printable ASCII characters.
const HOSTNAME_CHARS_MAX: usize = 255;

/// One record as a JSON line (without the newline).
pub fn jsonl(row: &AuditRow) -> String {
    serde_json::to_string(&AuditView::from(row)).unwrap_or_else(|_| "{}".to_owned())
}

/// Escapes a structured-data parameter value: `"`, `\` and `]` take a backslash (RFC 5424 §6.3.3),
/// and control characters (CR, LF and the rest) are written out as `\u{XXXX}`, never raw: a
/// collector that splits on line feeds must see one message per record.
fn sd_value(text: &str) -> String {
    let text = escape_controls(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Printable US-ASCII without spaces, or `-` when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// This machine's name for the HOSTNAME field.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    header_field(name.trim(), HOSTNAME_CHARS_MAX)
}

/// One record as an RFC 5424 message (without any transport framing).
pub fn syslog(row: &AuditRow, hostname: &str) -> String {
    let entry = &row.entry;
    let severity = if entry.outcome == "success" { SEVERITY_INFO } else { SEVERITY_WARNING };
    let priority = u16::from(FACILITY_LOG_AUDIT) * 8 + u16::from(severity);
    let mut data = format!(
        "[{SD_ID} seq=\"{}\" actor=\"{}\" action=\"{}\" outcome=\"{}\"",
        row.seq,
        sd_value(&entry.actor),
        sd_value(&entry.action),
        entry.outcome
    );
    for (name, value) in [("target", &entry.target), ("ip", &entry.ip)] {
        if let Some(value) = value {
            data.push_str(&format!(" {name}=\"{}\"", sd_value(value)));
        }
    }
    data.push(']');
    let details = escape_controls(&entry.details);
    format!(
        "<{priority}>1 {} {hostname} rampart - {} {data} {details}",
        rfc3339(entry.at),
        header_field(&entry.action, MSGID_CHARS_MAX)
    )
}

#[cfg(test)]
mod tests {
    use rampart_core::Timestamp;
    use rampart_store::AuditEntry;

    use super::*;

    fn row(outcome: &'static str, target: Option<&str>) -> AuditRow {
        AuditRow {
            seq: 42,
            entry: AuditEntry {
                at: Timestamp(1_800_000_000_123),
                actor: "system".to_owned(),
                action: "auth.login".to_owned(),
                target: target.map(str::to_owned),
                ip: Some("192.0.2.7".to_owned()),
                user_agent: Some("curl/8".to_owned()),
                outcome,
                details: "{\"reason\":\"x\"}".to_owned(),
            },
        }
    }

    #[test]
    fn a_record_becomes_an_rfc5424_message() {
        let message = syslog(&row("success", None), "chat1");
        assert_eq!(
            message,
            "<110>1 2027-01-15T08:00:00.123Z chat1 rampart - auth.login \
             [rampart@32473 seq=\"42\" actor=\"system\" action=\"auth.login\" outcome=\"success\" ip=\"192.0.2.7\"] \
             {\"reason\":\"x\"}"
        );
        assert!(syslog(&row("failure", None), "h").starts_with("<108>1 "));
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let message = syslog(&row("denied", Some("a\"b]c\\d")), "h");
        assert!(message.contains("target=\"a\\\"b\\]c\\\\d\""), "{message}");
    }

    /// Issue 16 item 6: a login name with a line feed (an alert's subject) must not forge a line.
    #[test]
    fn control_characters_never_reach_the_message_raw() {
        let mut record = row("success", Some("bob\n<110>1 2027-01-01T00:00:00Z forged"));
        record.entry.actor = "a\r\nb".to_owned();
        record.entry.details = "{\"username\":\"x\u{2028}y\"}".to_owned();
        let message = syslog(&record, "h");
        assert!(!message.chars().any(rampart_core::escape::is_line_unsafe), "{message:?}");
        assert_eq!(message.lines().count(), 1);
        assert!(message.contains("target=\"bob\\\\u{000a}<110>1"), "{message}");
    }

    #[test]
    fn a_record_becomes_one_json_line() {
        let line = jsonl(&row("success", None));
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["seq"], 42);
        assert_eq!(value["details"]["reason"], "x");
        assert!(!line.contains('\n'));
    }
}
