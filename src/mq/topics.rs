//! The messages Heft sends: one payload struct per topic, with its topic's name.
//!
//! A message is written with [`Payload::enqueue`] in the transaction of the change that causes it
//! (the outbox), and its consumer reads it back with [`Message::decode`](super::Message::decode).
//! Fields added later get a serde default, so rows written before the change still decode.

use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::{AnyConnection, DbError, DbResult, consumed, outbox, write_tx};

/// A message's payload, and the topic it travels on.
pub trait Payload: Serialize + DeserializeOwned {
    const TOPIC: &'static str;

    /// Write it to the outbox, to be delivered now. Call it inside the write transaction of the
    /// change that causes it, and wake the relay after the commit. Returns the message id.
    fn enqueue(&self, conn: &mut AnyConnection) -> DbResult<String> {
        self.enqueue_at(conn, None)
    }

    /// [`enqueue`](Self::enqueue), not to be delivered before `deliver_at`.
    fn enqueue_at(&self, conn: &mut AnyConnection, deliver_at: Option<NaiveDateTime>) -> DbResult<String> {
        let payload =
            serde_json::to_string(self).map_err(|e| DbError::Corrupt(format!("{} payload: {e}", Self::TOPIC)))?;
        outbox::enqueue(conn, Self::TOPIC, &payload, deliver_at)
    }

    /// [`enqueue_at`](Self::enqueue_at), once for `key`: of several handlings that would each send
    /// the same next message (a message delivered twice, two racing), only the first does. False
    /// when `key` was used.
    fn enqueue_once(&self, conn: &mut AnyConnection, key: &str, deliver_at: Option<NaiveDateTime>) -> DbResult<bool> {
        write_tx(conn, |conn| {
            if !consumed::once(conn, Self::TOPIC, key)? {
                return Ok(false);
            }
            self.enqueue_at(conn, deliver_at)?;
            Ok(true)
        })
    }
}

/// `order.auth_timeout`: a scanned order the shopper may not have authorised in time
/// (`orders.auth_timeout_s` after the scan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTimeout {
    pub order_id: i64,
}

impl Payload for AuthTimeout {
    const TOPIC: &'static str = "order.auth_timeout";
}

/// `order.confirm_check`: a scanned order whose shopper may have confirmed on the platform's page
/// without its callback reaching Heft (at each of `orders.confirm_checks_s` after the scan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmCheck {
    pub order_id: i64,
}

impl Payload for ConfirmCheck {
    const TOPIC: &'static str = "order.confirm_check";
}

/// `door.open_check`: an authorised order whose door may not have opened (`orders.open_check_s`
/// after the authorisation; `attempt` 2 is the last look).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCheck {
    pub order_id: i64,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

impl Payload for OpenCheck {
    const TOPIC: &'static str = "door.open_check";
}

/// `payment.capture`: charge a settled order. `round` counts the deferred rounds of one order's
/// charge (0, left out of the JSON: the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub order_id: i64,
    #[serde(default, skip_serializing_if = "is_first")]
    pub round: u32,
}

fn is_first(round: &u32) -> bool {
    *round == 0
}

impl Payload for Capture {
    const TOPIC: &'static str = "payment.capture";
}

/// `payment.release`: give back whatever the platform holds for a pre-authorisation Heft
/// cancelled (or whose basket came to nothing). A release the platform could not take yet is
/// sent again in later rounds: `chain` names the run (the first message's id; none on the
/// first), `round` counts within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub out_order_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(default, skip_serializing_if = "is_first")]
    pub round: u32,
}

impl Release {
    /// The first release of a pre-authorisation.
    pub fn new(out_order_no: &str) -> Release {
        Release { out_order_no: out_order_no.to_string(), chain: None, round: 0 }
    }
}

impl Payload for Release {
    const TOPIC: &'static str = "payment.release";
}

/// `payment.refund`: give money back on a paid order. `chain` names the run of rounds a request
/// (or a retry of a failed refund) starts; `round` counts within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub out_refund_no: String,
    #[serde(default = "first_chain")]
    pub chain: String,
    #[serde(default, skip_serializing_if = "is_first")]
    pub round: u32,
}

fn first_chain() -> String {
    "0".into()
}

impl Payload for Refund {
    const TOPIC: &'static str = "payment.refund";
}

/// `restock.check`: the cabinet's lanes may need restocking; `lanes` are the ones a change took
/// to their threshold (empty: look at every lane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestockCheck {
    pub sn: String,
    #[serde(default)]
    pub lanes: Vec<String>,
}

impl Payload for RestockCheck {
    const TOPIC: &'static str = "restock.check";
}

/// Every topic Heft sends. RabbitMQ queues are declared for all of them (and for any topic a
/// registered handler names), so a message waits in its queue even before its consumer exists.
pub const ALL: &[&str] = &[
    AuthTimeout::TOPIC,
    ConfirmCheck::TOPIC,
    OpenCheck::TOPIC,
    Capture::TOPIC,
    Release::TOPIC,
    Refund::TOPIC,
    RestockCheck::TOPIC,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_their_wire_shape() {
        let json = serde_json::to_value(Capture { order_id: 7, round: 2 }).expect("json");
        assert_eq!(json, serde_json::json!({ "order_id": 7, "round": 2 }));
        let json = serde_json::to_value(Capture { order_id: 7, round: 0 }).expect("json");
        assert_eq!(json, serde_json::json!({ "order_id": 7 }), "the first round as it always was");
        // Written before rounds existed: round 0.
        let old: Capture = serde_json::from_str(r#"{"order_id": 7}"#).expect("decode");
        assert_eq!(old, Capture { order_id: 7, round: 0 });
        let old: Refund = serde_json::from_str(r#"{"out_refund_no": "HO1R1"}"#).expect("decode");
        assert_eq!((old.chain.as_str(), old.round), ("0", 0));
        let json = serde_json::to_value(Release::new("HO1")).expect("json");
        assert_eq!(json, serde_json::json!({ "out_order_no": "HO1" }), "the first release as it always was");
        let old: Release = serde_json::from_str(r#"{"out_order_no": "HO1"}"#).expect("decode");
        assert_eq!(old, Release::new("HO1"));
        let old: RestockCheck = serde_json::from_str(r#"{"sn": "CAB-1"}"#).expect("decode");
        assert!(old.lanes.is_empty());
    }
}
