//! The audit record's canonical encoding: the bytes the hash chain covers. Every field, in a fixed
//! order, length-prefixed and with an explicit marker for absent optional fields, so no two
//! different records encode alike and a change to any field changes the encoding.

/// The fields of one audit record, as stored.
#[derive(Clone, Copy, Debug)]
pub struct RecordFields<'a> {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a str,
}

const ENCODING_VERSION: u8 = 1;

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The canonical bytes of a record.
pub fn encode(record: &RecordFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.details.len());
    out.push(ENCODING_VERSION);
    out.extend_from_slice(&record.seq.to_be_bytes());
    out.extend_from_slice(&record.at_ms.to_be_bytes());
    for field in [
        Some(record.actor),
        Some(record.action),
        record.target,
        record.ip,
        record.user_agent,
        Some(record.outcome),
        Some(record.details),
    ] {
        put_text(&mut out, field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RecordFields<'static> {
        RecordFields {
            seq: 1,
            at_ms: 2,
            actor: "system",
            action: "server.start",
            target: None,
            ip: None,
            user_agent: None,
            outcome: "success",
            details: "{}",
        }
    }

    #[test]
    fn every_field_changes_the_encoding() {
        let original = encode(&base());
        let changed = [
            RecordFields { seq: 2, ..base() },
            RecordFields { at_ms: 3, ..base() },
            RecordFields { actor: "u1", ..base() },
            RecordFields { action: "server.stop", ..base() },
            RecordFields { target: Some(""), ..base() },
            RecordFields { ip: Some("127.0.0.1"), ..base() },
            RecordFields { user_agent: Some("curl"), ..base() },
            RecordFields { outcome: "failure", ..base() },
            RecordFields { details: "{\"a\":1}", ..base() },
        ];
        for record in changed {
            assert_ne!(encode(&record), original, "{record:?}");
        }
    }

    #[test]
    fn text_cannot_shift_between_fields() {
        let a = RecordFields { actor: "ab", action: "c", ..base() };
        let b = RecordFields { actor: "a", action: "bc", ..base() };
        assert_ne!(encode(&a), encode(&b));
        let none = RecordFields { target: None, ip: Some("x"), ..base() };
        let some = RecordFields { target: Some("x"), ip: None, ..base() };
        assert_ne!(encode(&none), encode(&some));
    }
}
