//! Signed frames of device protocol v1 (see `docs/device-protocol.md`).
//!
//! Every frame, both ways, is `{"m": {...}, "s": "<base64 HMAC-SHA256(key, topic + "\n" + m)>"}`
//! where `m` is the exact bytes of the message object as sent. The broker cannot tell who
//! published a message, so this signature is what proves a frame came from the cabinet (and a
//! command from Heft).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::domain::alert::AlertCode;

type HmacSha256 = Hmac<Sha256>;

pub const PROTOCOL_VERSION: u32 = 1;

/// Why a frame was dropped. The names are the `reason` label of `heft_frames_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("frame is larger than mqtt.max_frame_bytes")]
    Oversize,
    #[error("topic is not a device protocol topic")]
    UnknownTopic,
    #[error("frame is not a JSON object with m and s")]
    Malformed,
    #[error("frame has no signature")]
    MissingSignature,
    #[error("signature does not verify with the cabinet's key")]
    BadSignature,
    #[error("frame belongs to another boot")]
    WrongBoot,
    #[error("seq was not greater than the last accepted one")]
    Replay,
    #[error("login boot was not greater than the last accepted one")]
    StaleBoot,
    #[error("cabinet is not provisioned")]
    UnknownCabinet,
    #[error("cabinet has not logged in")]
    NotLoggedIn,
    #[error("message fields are missing or of the wrong type")]
    BadMessage,
}

impl Reject {
    pub const ALL: [Reject; 11] = [
        Reject::Oversize,
        Reject::UnknownTopic,
        Reject::Malformed,
        Reject::MissingSignature,
        Reject::BadSignature,
        Reject::WrongBoot,
        Reject::Replay,
        Reject::StaleBoot,
        Reject::UnknownCabinet,
        Reject::NotLoggedIn,
        Reject::BadMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Oversize => "oversize",
            Reject::UnknownTopic => "unknown_topic",
            Reject::Malformed => "malformed",
            Reject::MissingSignature => "missing_signature",
            Reject::BadSignature => "bad_signature",
            Reject::WrongBoot => "wrong_boot",
            Reject::Replay => "replay",
            Reject::StaleBoot => "stale_boot",
            Reject::UnknownCabinet => "unknown_cabinet",
            Reject::NotLoggedIn => "not_logged_in",
            Reject::BadMessage => "bad_message",
        }
    }

    /// The security alert of a rejection that suggests someone forging or replaying frames.
    pub fn security_alert(self) -> Option<AlertCode> {
        match self {
            Reject::MissingSignature => Some(AlertCode::FrameMissingSignature),
            Reject::BadSignature => Some(AlertCode::FrameBadSignature),
            Reject::WrongBoot => Some(AlertCode::FrameWrongBoot),
            Reject::Replay => Some(AlertCode::FrameReplay),
            Reject::StaleBoot => Some(AlertCode::FrameStaleBoot),
            _ => None,
        }
    }
}

/// A frame as received, before its signature is checked. Borrowed from the payload bytes.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub m: &'a RawValue,
    /// A `Cow`, not a `&str`: JSON encoders may escape `/` as `\/`, and an escaped string cannot
    /// be borrowed.
    #[serde(default, borrow)]
    pub s: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<Envelope<'a>, Reject> {
        let env: Envelope<'a> = serde_json::from_slice(payload).map_err(|_| Reject::Malformed)?;
        if !env.m.get().starts_with('{') {
            return Err(Reject::Malformed);
        }
        Ok(env)
    }

    /// Check the signature against `key` for `topic`. Constant time.
    pub fn verify(&self, topic: &[u8], key: &[u8]) -> Result<(), Reject> {
        let s = self.s.as_deref().filter(|s| !s.is_empty()).ok_or(Reject::MissingSignature)?;
        let sig = B64.decode(s).map_err(|_| Reject::BadSignature)?;
        mac(key, topic, self.m.get().as_bytes()).verify_slice(&sig).map_err(|_| Reject::BadSignature)
    }

    /// Decode the message once the signature is good.
    pub fn message<T: Deserialize<'a>>(&self) -> Result<T, Reject> {
        serde_json::from_str(self.m.get()).map_err(|_| Reject::BadMessage)
    }
}

fn mac(key: &[u8], topic: &[u8], m: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(topic);
    mac.update(b"\n");
    mac.update(m);
    mac
}

/// base64 HMAC-SHA256 over `topic + "\n" + m`.
pub fn signature(key: &[u8], topic: &str, m: &str) -> String {
    B64.encode(mac(key, topic.as_bytes(), m.as_bytes()).finalize().into_bytes())
}

/// Serialize `m` and wrap it in a signed envelope for `topic`.
pub fn sign<T: Serialize>(key: &[u8], topic: &str, m: &T) -> Result<Vec<u8>, serde_json::Error> {
    let m = serde_json::to_string(m)?;
    let s = signature(key, topic, &m);
    let mut out = Vec::with_capacity(m.len() + s.len() + 16);
    out.extend_from_slice(b"{\"m\":");
    out.extend_from_slice(m.as_bytes());
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\"}");
    Ok(out)
}

/// Fields every upstream message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Header {
    /// The cabinet's login counter: incremented (and persisted) before every login.
    pub boot: u64,
    /// Increases by at least one with every frame within a boot; the login is seq 1 or more.
    pub seq: u64,
    /// Cabinet clock, Unix milliseconds.
    #[serde(default)]
    pub ts: Option<i64>,
}

/// `up/login`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Login {
    #[serde(flatten)]
    pub h: Header,
    /// Protocol version the firmware speaks.
    #[serde(default = "v1")]
    pub proto: u32,
    /// Firmware version string, free form.
    #[serde(default)]
    pub fw: Option<String>,
    /// GCJ-02 position from the cabinet's positioning module, if it has one.
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lng: Option<f64>,
}

fn v1() -> u32 {
    PROTOCOL_VERSION
}

/// `up/heartbeat`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub h: Header,
    /// Inside temperature, degrees Celsius.
    pub temp_c: f64,
    /// Whether the heater (or compressor, for a fridge) is running.
    pub heating: bool,
}

/// Any other upstream message: only the header is needed to check boot and seq.
#[derive(Debug, Clone, Deserialize)]
pub struct AnyUp {
    #[serde(flatten)]
    pub h: Header,
}

/// The cadence a cabinet follows, sent in `login_ack`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cadence {
    pub heartbeat_s: u64,
    pub closed_weight_s: u64,
    pub open_weight_ms: u64,
    pub after_close_weight_ms: u64,
    pub after_close_s: u64,
}

/// How Heft sends commands (`login_ack.commands`): it waits `timeout_ms` for an ack, then sends
/// the same `cmd_id` again, `retries` times at most, before giving up. A cabinet uses it to tell
/// a repeat from a new command, and need not hard-code either.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandTiming {
    pub timeout_ms: u64,
    pub retries: u32,
}

/// `down/login_ack`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoginAck {
    /// Echo of the login's boot: a cabinet ignores commands for another boot.
    pub boot: u64,
    /// Heft's command sequence for this boot; a cabinet executes only increasing values.
    pub seq: u64,
    pub ok: bool,
    /// Why the login was refused, or `login_required` when Heft asks for a fresh login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `stale_boot`: the last boot Heft accepted, so the cabinet can jump past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot: Option<u64>,
    /// Heft's clock, Unix milliseconds.
    pub server_time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cadence: Option<Cadence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandTiming>,
    /// How many load-cell channels every `counts` must carry (the cabinet type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn sign_then_verify() {
        let topic = "cabinets/CAB-1/up/heartbeat";
        let frame =
            sign(KEY, topic, &Heartbeat { h: Header { boot: 3, seq: 9, ts: Some(1) }, temp_c: 4.5, heating: false })
                .expect("sign");
        let env = Envelope::parse(&frame).expect("parse");
        env.verify(topic.as_bytes(), KEY).expect("verifies");
        let hb: Heartbeat = env.message().expect("decodes");
        assert_eq!((hb.h.boot, hb.h.seq, hb.temp_c, hb.heating), (3, 9, 4.5, false));
        // Same bytes on another topic, or with another key: refused.
        assert_eq!(env.verify(b"cabinets/CAB-2/up/heartbeat", KEY), Err(Reject::BadSignature));
        assert_eq!(env.verify(topic.as_bytes(), b"another key"), Err(Reject::BadSignature));
    }

    #[test]
    fn whitespace_inside_m_is_part_of_what_is_signed() {
        let topic = "cabinets/CAB-1/up/login";
        let m = r#"{ "boot": 1, "seq": 1 }"#;
        let frame = format!(r#"{{"m": {m}, "s": "{}"}}"#, signature(KEY, topic, m));
        let env = Envelope::parse(frame.as_bytes()).expect("parse");
        env.verify(topic.as_bytes(), KEY).expect("the raw bytes are signed, not a re-serialization");
    }

    #[test]
    fn escaped_slashes_in_the_signature_are_fine() {
        let topic = "cabinets/CAB-1/up/login";
        let m = r#"{"boot":1,"seq":1}"#;
        let mut sig = signature(KEY, topic, m);
        let mut n = 0;
        // Find an m whose signature contains '/', as about half do, and escape it as json-c does.
        while !sig.contains('/') {
            n += 1;
            sig = signature(KEY, topic, &format!(r#"{{"boot":1,"seq":{n}}}"#));
        }
        let m = format!(r#"{{"boot":1,"seq":{n}}}"#);
        let frame = format!(r#"{{"m":{m},"s":"{}"}}"#, sig.replace('/', "\\/"));
        let env = Envelope::parse(frame.as_bytes()).expect("parses");
        env.verify(topic.as_bytes(), KEY).expect("verifies");
    }

    #[test]
    fn malformed_and_unsigned_frames() {
        assert_eq!(Envelope::parse(b"not json").err(), Some(Reject::Malformed));
        assert_eq!(Envelope::parse(br#"{"m": 5, "s": "x"}"#).err(), Some(Reject::Malformed));
        assert_eq!(Envelope::parse(br#"{"s": "x"}"#).err(), Some(Reject::Malformed));
        let env = Envelope::parse(br#"{"m": {"boot": 1, "seq": 1}}"#).expect("parses");
        assert_eq!(env.verify(b"t", KEY), Err(Reject::MissingSignature));
        let env = Envelope::parse(br#"{"m": {"boot": 1, "seq": 1}, "s": "%%%"}"#).expect("parses");
        assert_eq!(env.verify(b"t", KEY), Err(Reject::BadSignature));
    }

    #[test]
    fn bad_message_after_good_signature() {
        let topic = "cabinets/CAB-1/up/heartbeat";
        let m = r#"{"boot":1,"seq":2,"temp_c":"warm","heating":false}"#;
        let frame = format!(r#"{{"m":{m},"s":"{}"}}"#, signature(KEY, topic, m));
        let env = Envelope::parse(frame.as_bytes()).expect("parse");
        env.verify(topic.as_bytes(), KEY).expect("verifies");
        assert_eq!(env.message::<Heartbeat>().err(), Some(Reject::BadMessage));
    }

    /// The worked example of docs/device-protocol.md: if this changes, so must the document.
    #[test]
    fn documented_example() {
        let key = B64.decode("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=").expect("key");
        let topic = "cabinets/CAB-0001/up/heartbeat";
        let m = r#"{"boot":7,"seq":42,"ts":1764000000000,"temp_c":4.5,"heating":false}"#;
        assert_eq!(signature(&key, topic, m), DOC_EXAMPLE_SIGNATURE);
    }

    /// Every frame of the example session (§12 of docs/device-protocol.md) verifies under the
    /// topic it is shown on, with the key of §11: the document's promise that they are real.
    #[test]
    fn documented_session_frames_verify() {
        let key = B64.decode("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=").expect("key");
        let doc = include_str!("../../docs/device-protocol.md");
        let start = doc.find("## 12. Example session").expect("§12");
        let section = &doc[start..start + doc[start..].find("## 13.").expect("§13")];
        let (mut topic, mut checked) = (String::new(), 0);
        for line in section.lines() {
            if let Some(at) = line.find("cabinets/CAB-0001/") {
                let rest = &line[at..];
                topic = rest[..rest.find('`').unwrap_or(rest.len())].to_string();
            }
            let frame = line.trim();
            if frame.starts_with("{\"m\":") && frame.contains("\"s\":") {
                let env = Envelope::parse(frame.as_bytes()).expect("parses");
                env.verify(topic.as_bytes(), &key).unwrap_or_else(|e| panic!("{topic}: {frame}: {e:?}"));
                checked += 1;
            }
        }
        assert_eq!(checked, 4, "login, login_ack, heartbeat, weight");
    }

    pub const DOC_EXAMPLE_SIGNATURE: &str = "gsZa2CXvXMEdXqlL+zaDY8RbdpjdBhOBackLC5D+xjA=";
}
