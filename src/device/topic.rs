//! MQTT topics of device protocol v1: `cabinets/{sn}/up/{kind}` and `cabinets/{sn}/down/{kind}`.

use crate::domain::cabinet::Sn;
pub use crate::domain::command::DownKind;
use crate::domain::names::named_enum;

/// What the bridge reads: every cabinet's upstream frames. rumqttd keeps one log per
/// subscription filter, so this filter's log is the bridge's slack (`mqtt.bridge_log_bytes`).
pub const UP_FILTER: &str = "cabinets/+/up/+";

/// Topics of one, two, three, or five and more levels: where frames outside the protocol land,
/// so a misconfigured or misbehaving device shows up in the metrics instead of vanishing. None
/// of them matches [`UP_FILTER`] (a second match would deliver each frame twice) nor a cabinet's
/// `cabinets/{sn}/down/+`; four-level topics other than the protocol's are not seen.
pub const STRAY_FILTERS: [&str; 4] = ["+", "+/+", "+/+/+", "+/+/+/+/+/#"];

named_enum! {
    /// What a cabinet sends (`cabinets/{sn}/up/{kind}`).
    pub enum UpKind {
        Login = "login",
        Heartbeat = "heartbeat",
        Weight = "weight",
        Door = "door",
        Ack = "ack",
        Event = "event",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is not UTF-8")]
    NotUtf8,
    #[error("topic {0:?} is not cabinets/{{sn}}/up/{{kind}}")]
    Shape(String),
    #[error("unknown upstream kind {0:?}")]
    UnknownKind(String),
    #[error("invalid serial number in topic: {0}")]
    BadSn(String),
}

/// Parse an upstream topic.
pub fn parse_up(topic: &[u8]) -> Result<(Sn, UpKind), TopicError> {
    let topic = std::str::from_utf8(topic).map_err(|_| TopicError::NotUtf8)?;
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("cabinets"), Some(sn), Some("up"), Some(kind), None) => {
            let kind = UpKind::parse(kind).ok_or_else(|| TopicError::UnknownKind(kind.to_string()))?;
            let sn = Sn::parse(sn).map_err(|e| TopicError::BadSn(e.to_string()))?;
            Ok((sn, kind))
        }
        _ => Err(TopicError::Shape(topic.chars().take(128).collect())),
    }
}

pub fn up(sn: &str, kind: UpKind) -> String {
    format!("cabinets/{sn}/up/{}", kind.as_str())
}

pub fn down(sn: &str, kind: DownKind) -> String {
    format!("cabinets/{sn}/down/{}", kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_upstream_kind() {
        for &kind in UpKind::ALL {
            let t = up("CAB-001", kind);
            assert_eq!(parse_up(t.as_bytes()), Ok((Sn::parse("CAB-001").expect("sn"), kind)));
        }
    }

    /// The bridge's filters as rumqttd matches them: each frame reaches one link once, Heft's
    /// own downlink reaches neither, and the bridge's log size (a `custom_segment` keyed by
    /// `UP_FILTER`) applies to the bridge's filter and not to a cabinet's.
    #[test]
    fn the_bridge_filters_split_the_topics() {
        use rumqttd::protocol::matches;
        let strays = |t: &str| STRAY_FILTERS.iter().filter(|f| matches(t, f)).count();
        for t in [up("CAB-1", UpKind::Login), up("CAB-1", UpKind::Weight)] {
            assert!(matches(&t, UP_FILTER), "{t}");
            assert_eq!(strays(&t), 0, "{t}");
        }
        let own = down("CAB-1", DownKind::LoginAck);
        assert!(!matches(&own, UP_FILTER));
        assert_eq!(strays(&own), 0);
        for t in ["somewhere", "somewhere/else", "cabinets/CAB-1/up", "a/b/c/d/e", "cabinets/CAB-1/up/x/y"] {
            assert!(!matches(t, UP_FILTER), "{t}");
            assert_eq!(strays(t), 1, "{t}");
        }
        assert!(matches(UP_FILTER, UP_FILTER));
        assert!(!matches("cabinets/CAB-1/down/+", UP_FILTER));
        assert!(STRAY_FILTERS.iter().all(|f| !matches(f, UP_FILTER)));
    }

    #[test]
    fn rejects_other_shapes() {
        assert!(matches!(parse_up(b"cabinets/CAB-001/up/selfie"), Err(TopicError::UnknownKind(_))));
        assert!(matches!(parse_up(b"cabinets/CAB-001/down/open"), Err(TopicError::Shape(_))));
        assert!(matches!(parse_up(b"cabinets/CAB-001/up/login/x"), Err(TopicError::Shape(_))));
        assert!(matches!(parse_up(b"other/topic"), Err(TopicError::Shape(_))));
        assert!(matches!(parse_up(b"cabinets/a b/up/login"), Err(TopicError::BadSn(_))));
        assert_eq!(parse_up(&[0xff, 0xfe]), Err(TopicError::NotUtf8));
    }
}
