//! Messages of device protocol v1 beyond login and heartbeat: weights, doors, commands and their
//! acks (see `docs/device-protocol.md`). Every one travels inside a signed envelope
//! (`frame::sign` / `Envelope::verify`).

use serde::{Deserialize, Serialize};

use super::frame::Header;
use crate::domain::units::Fen;

/// `up/weight`: one reading of every load-cell channel, raw counts, index = channel number.
/// Sent at the cadence of `login_ack` (door closed, door open, after close).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct WeightUp {
    #[serde(flatten)]
    pub h: Header,
    pub counts: Vec<i64>,
}

/// `up/door`: a door opened or closed. With the reading of every channel at that moment, when
/// the controller has one (the before-weights of a session).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DoorUp {
    #[serde(flatten)]
    pub h: Header,
    pub door: u32,
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Vec<i64>>,
}

/// `up/ack`: the cabinet's answer to a command. `ok: false` with `error` when it refused or
/// could not carry it out. A command received again with a `cmd_id` already carried out is
/// answered again with the same result, not executed twice.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AckUp {
    #[serde(flatten)]
    pub h: Header,
    pub cmd_id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the command produced: `{"version"}` for `config` and `price_tags`, `{"counts",
    /// "door_open"}` for `calibrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// Every downstream command: the cabinet's current boot (a command for another boot is ignored),
/// Heft's increasing sequence (a command whose seq is not greater than the last executed one is
/// ignored), and the command id the ack must echo. A retry keeps `cmd_id` and takes a new `seq`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Command<T> {
    pub boot: u64,
    pub seq: u64,
    pub cmd_id: String,
    #[serde(flatten)]
    pub body: T,
}

/// `down/config`: which channel weighs which lane, behind which door.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ConfigCmd {
    pub version: u64,
    pub doors: Vec<DoorConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DoorConfig {
    pub door: u32,
    pub lanes: Vec<LaneConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LaneConfig {
    pub code: String,
    pub channel: u32,
}

/// `down/price_tags`: what each lane's electronic shelf label shows.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PriceTagsCmd {
    pub version: u64,
    pub tags: Vec<PriceTag>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PriceTag {
    pub lane: String,
    /// Empty when the lane holds no product.
    pub name: String,
    /// Integer fen; 0 when the lane holds no product.
    pub price_fen: Fen,
}

/// `down/calibrate`: take one calibration reading of a door's channels.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CalibrateCmd {
    pub door: u32,
    pub step: CalibrationStep,
    /// The channels to read, in lane order.
    pub channels: Vec<u32>,
    /// With `span` and `verify`: the standard weight (grams) the operator puts on each lane;
    /// the cabinet's display asks for it and the cabinet reads once it has settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_g: Option<f64>,
    /// How many separate readings to return in `samples` (protocol §9.3): Heft asks for as many
    /// as the lanes' noise needs. Absent: one steady reading, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationStep {
    /// Lanes empty: the zero reading.
    Tare,
    /// The standard weight on each lane: the gain.
    Span,
    /// The standard weight on each lane again: Heft checks the computed grams.
    Verify,
}

impl CalibrationStep {
    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationStep::Tare => "tare",
            CalibrationStep::Span => "span",
            CalibrationStep::Verify => "verify",
        }
    }
}

/// `result` of a `calibrate` ack: one count per requested channel, in the order asked.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CalibrateResult {
    pub counts: Vec<i64>,
    /// When the command asked for `samples`: that many separate raw readings, each one count per
    /// listed channel, oldest first, taken at the cabinet's own rate once the lanes settled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Vec<i64>>,
    /// Whether the door was open when the reading was taken.
    pub door_open: bool,
}

/// `result` of a `config` or `price_tags` ack.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct VersionResult {
    pub version: u64,
}

/// `down/open`: unlock a door for a session (a purchase, a restock, maintenance). The cabinet
/// unlocks it for `unlock_s` seconds and acks at once with `{"door"}`; when someone pulls the door
/// open it sends `up/door` (with the counts of every channel: the session's before-weights). A
/// door nobody opened locks itself again when `unlock_s` runs out, with no frame.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct OpenCmd {
    pub door: u32,
    /// The session the door is opened for (shown on the cabinet's display, logged).
    pub session_id: i64,
    pub unlock_s: u64,
}

/// `down/weigh`: stream weights at `after_close_weight_ms` for `after_close_s` from now, as after
/// a door closes. Acked at once with an empty result.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct WeighCmd {}

/// `result` of an `open` ack.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct OpenResult {
    pub door: u32,
}
