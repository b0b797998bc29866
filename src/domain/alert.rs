//! Alerts for people: who should act (audience), how urgent, and a stable code.

use super::names::named_enum;

named_enum! {
    /// Who should act on an alert.
    pub enum Audience {
        /// Operators watching the fleet and the platform.
        Ops = "ops",
        /// Field staff who visit cabinets.
        Maintenance = "maintenance",
        /// Whoever investigates forged or replayed traffic.
        Security = "security",
    }
}

named_enum! {
    /// How urgent an alert is.
    pub enum Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

/// An alert to raise. While an alert with the same code and cabinet is open, raising it again
/// only counts another occurrence.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    pub audience: Audience,
    pub severity: Severity,
    pub code: String,
    pub sn: Option<String>,
    pub message: String,
    pub detail: Option<String>,
}

pub const CABINET_OFFLINE: &str = "cabinet_offline";
pub const INGEST_UNHEALTHY: &str = "ingest_unhealthy";

pub fn cabinet_offline(sn: &str, silent_s: u64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: CABINET_OFFLINE.into(),
        sn: Some(sn.into()),
        message: format!(
            "cabinet {sn} has sent no heartbeat for {silent_s} s while the rest of the fleet is heard; check power and network on site"
        ),
        detail: None,
    }
}

pub fn ingest_unhealthy(heard: u64, tracked: u64, ratio: f64, threshold: f64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: INGEST_UNHEALTHY.into(),
        sn: None,
        message: format!(
            "ingest looks unhealthy: only {heard} of {tracked} cabinets heard from ({:.0}% < {:.0}%); silent cabinets are marked suspect, not offline, until this clears",
            ratio * 100.0,
            threshold * 100.0
        ),
        detail: Some(format!(r#"{{"heard":{heard},"tracked":{tracked},"ratio":{ratio:.4}}}"#)),
    }
}

/// A frame that failed a signature, boot or seq check.
pub fn security(sn: &str, reason: &str, description: &str, suppressed: u64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Security,
        severity: Severity::Critical,
        code: format!("frame_{reason}"),
        sn: Some(sn.into()),
        message: format!("frame for cabinet {sn} dropped: {description}"),
        detail: Some(format!(r#"{{"reason":"{reason}","suppressed_since_last":{suppressed}}}"#)),
    }
}

pub const PAYMENT_ANOMALY: &str = "payment_anomaly";

/// A platform reported money moving where Heft did not expect it (paid after a cancel, a second
/// transaction). Recorded as the platform says; a person must look.
pub fn payment_anomaly(channel: &str, out_order_no: &str, reason: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: PAYMENT_ANOMALY.into(),
        sn: None,
        message: format!(
            "{channel} reported a payment Heft did not expect on {out_order_no}: {reason}; see /ops/payments/{out_order_no}"
        ),
        detail: Some(out_order_no.to_string()),
    }
}
