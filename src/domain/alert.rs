//! Alerts for people: who should act (audience), how urgent, and a stable code.

use super::names::named_enum;
use super::units::{Fen, Grams};

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

named_enum! {
    /// What an alert is about. While one of a code and cabinet is open, raising it again counts
    /// another occurrence; resolving closes it.
    pub enum AlertCode {
        CabinetOffline = "cabinet_offline",
        IngestUnhealthy = "ingest_unhealthy",
        PaymentAnomaly = "payment_anomaly",
        LaneDrift = "lane_drift",
        LaneUnreliable = "lane_unreliable",
        ChannelCount = "channel_count",
        TemperatureOutOfRange = "temperature_out_of_range",
        DoorOpenedUnauthorised = "door_opened_unauthorised",
        DoorOpenUnheld = "door_open_unheld",
        DoorOpenTooLong = "door_open_too_long",
        SettlementRefused = "settlement_refused",
        PreauthGone = "preauth_gone",
        ReleaseFailed = "release_failed",
        PaymentStuck = "payment_stuck",
        RefundFailed = "refund_failed",
        BillMissing = "bill_missing",
        BillCases = "bill_cases",
        ReconcileFailed = "reconcile_failed",
        StockUnreadable = "stock_unreadable",
        StockLoss = "stock_loss",
        RestockNeeded = "restock_needed",
        RestockUncounted = "restock_uncounted",
        MaintenanceWeightChange = "maintenance_weight_change",
        MessageDead = "message_dead",
        // A frame that failed a signature, boot or seq check (`device::frame::Reject`).
        FrameMissingSignature = "frame_missing_signature",
        FrameBadSignature = "frame_bad_signature",
        FrameWrongBoot = "frame_wrong_boot",
        FrameReplay = "frame_replay",
        FrameStaleBoot = "frame_stale_boot",
    }
}

/// An alert to raise. While an alert with the same code and cabinet is open, raising it again
/// only counts another occurrence.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    pub audience: Audience,
    pub severity: Severity,
    pub code: AlertCode,
    pub sn: Option<String>,
    /// What it is about beside the cabinet (an order's number): alerts of one code and cabinet
    /// about two orders are two alerts.
    pub subject: Option<String>,
    pub message: String,
    pub detail: Option<String>,
}

pub fn cabinet_offline(sn: &str, silent_s: u64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: AlertCode::CabinetOffline,
        sn: Some(sn.into()),
        subject: None,
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
        code: AlertCode::IngestUnhealthy,
        sn: None,
        subject: None,
        message: format!(
            "ingest looks unhealthy: only {heard} of {tracked} cabinets heard from ({:.0}% < {:.0}%); silent cabinets are marked suspect, not offline, until this clears",
            ratio * 100.0,
            threshold * 100.0
        ),
        detail: Some(format!(r#"{{"heard":{heard},"tracked":{tracked},"ratio":{ratio:.4}}}"#)),
    }
}

/// A frame that failed a signature, boot or seq check.
pub fn security(sn: &str, code: AlertCode, reason: &str, description: &str, suppressed: u64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Security,
        severity: Severity::Critical,
        code,
        sn: Some(sn.into()),
        subject: None,
        message: format!("frame for cabinet {sn} dropped: {description}"),
        detail: Some(format!(r#"{{"reason":"{reason}","suppressed_since_last":{suppressed}}}"#)),
    }
}

/// A platform reported money moving where Heft did not expect it (paid after a cancel, a second
/// transaction). Recorded as the platform says; a person must look.
pub fn payment_anomaly(channel: &str, out_order_no: &str, reason: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::PaymentAnomaly,
        sn: None,
        subject: Some(out_order_no.into()),
        message: format!(
            "{channel} reported a payment Heft did not expect on {out_order_no}: {reason}; see /ops/payments/{out_order_no}"
        ),
        detail: Some(out_order_no.to_string()),
    }
}

// --- cabinets and their weights -----------------------------------------------------------

/// One lane whose closed-door weight moved from its baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaneDrift {
    pub lane: String,
    pub from_g: Grams,
    pub to_g: Grams,
    pub delta_g: Grams,
    /// Whole units of the lane's product the move amounts to (negative: taken), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<i64>,
}

/// A lane whose noise is too high to tell its product's counts apart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaneNoise {
    pub lane: String,
    pub noise_g: Grams,
    pub unit_g: Grams,
    /// Readings a settlement would need to count it, against the few it can wait for.
    pub readings_needed: u64,
}

/// Lanes whose load cell is too noisy to count their product within a settlement's wait: their
/// purchases go to review until the cell is fixed or the product moved to a quieter lane.
pub fn lane_unreliable(sn: &str, lanes: &[LaneNoise]) -> AlertSpec {
    let each: Vec<String> =
        lanes.iter().map(|l| format!("{} (noise {} g, units of {} g)", l.lane, l.noise_g, l.unit_g)).collect();
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: AlertCode::LaneUnreliable,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: load cell too noisy to count its product on lane {}", each.join(", ")),
        detail: serde_json::to_string(lanes).ok(),
    }
}

/// A cabinet sent `sent` channels where its type has `expected`: its firmware or its type is
/// wrong, and the lanes on channels it does not send cannot be weighed.
pub fn channel_count(sn: &str, sent: usize, expected: usize, unweighed: &[String]) -> AlertSpec {
    let effect = if unweighed.is_empty() {
        String::new()
    } else {
        format!("; lanes {} are not weighed and their purchases go to review", unweighed.join(", "))
    };
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: AlertCode::ChannelCount,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn} sends {sent} load-cell channels, its type has {expected}{effect}"),
        detail: serde_json::to_string(
            &serde_json::json!({ "sent": sent, "expected": expected, "unweighed": unweighed }),
        )
        .ok(),
    }
}

/// Weight changed with the door closed and no session: a load cell creeping, or a lane disturbed
/// with the door locked.
pub fn lane_drift(sn: &str, drifted: &[LaneDrift]) -> AlertSpec {
    let lanes: Vec<String> = drifted
        .iter()
        .map(|d| {
            let sign = if d.delta_g > Grams::ZERO { "+" } else { "" };
            match d.units {
                Some(u) => {
                    let (n, what) = if u < 0 { (-u, "taken") } else { (u, "added") };
                    let units = if n == 1 { "unit" } else { "units" };
                    format!("{} ({sign}{} g: {n} {units} {what} behind the locked door)", d.lane, d.delta_g)
                }
                None => format!("{} ({sign}{} g)", d.lane, d.delta_g),
            }
        })
        .collect();
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: AlertCode::LaneDrift,
        sn: Some(sn.into()),
        subject: None,
        message: format!(
            "cabinet {sn}: weight changed with the door closed and no session on lane {}",
            lanes.join(", ")
        ),
        detail: serde_json::to_string(drifted).ok(),
    }
}

/// A cabinet outside its type's temperature range for longer than the type allows.
pub fn temperature(sn: &str, temp_c: f64, (min_c, max_c): (f64, f64), since_ms: i64, now_ms: i64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Critical,
        code: AlertCode::TemperatureOutOfRange,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: {temp_c} °C, outside {min_c}…{max_c} °C for {} s", (now_ms - since_ms) / 1000),
        detail: Some(
            serde_json::json!({"temp_c": temp_c, "min_c": min_c, "max_c": max_c, "since_ms": since_ms}).to_string(),
        ),
    }
}

// --- doors --------------------------------------------------------------------------------

/// A purchase's door opened before the shopper confirmed the pre-authorisation.
pub fn door_opened_unauthorised(sn: &str, door: u32) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::DoorOpenedUnauthorised,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: door {door} opened before the shopper authorised"),
        detail: None,
    }
}

/// A door open that no session holds: goods are unguarded.
pub fn door_open_unheld(sn: &str, door: u32) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::DoorOpenUnheld,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: door {door} is open and no purchase, restock or maintenance holds it"),
        detail: Some(serde_json::json!({ "door": door }).to_string()),
    }
}

/// A session's door still open after `orders.door_open_alert_s`.
pub fn door_open_too_long(sn: &str, order_id: Option<i64>, limit_s: u64) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::DoorOpenTooLong,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: door open for more than {limit_s} s (order {order_id:?})"),
        detail: Some(serde_json::json!({ "order_id": order_id, "limit_s": limit_s }).to_string()),
    }
}

// --- purchases and payments ---------------------------------------------------------------

/// Goods were taken on an order that could not take them (it ended meanwhile): a person must
/// book and charge them from the weight trace.
pub fn settlement_refused(sn: &str, order_id: i64, status: &str, why: &str, after_g: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::SettlementRefused,
        sn: Some(sn.into()),
        subject: Some(order_id.to_string()),
        message: format!(
            "cabinet {sn}: order {order_id} is {status} and could not be settled ({why}); see its weight trace"
        ),
        detail: Some(serde_json::json!({ "order_id": order_id, "after_g": after_g }).to_string()),
    }
}

/// A settled order can no longer be charged (its pre-authorisation was cancelled or expired): the
/// amount stays as debt and a person follows it up.
pub fn preauth_gone(sn: &str, order_id: i64, out_order_no: &str, owed_fen: Fen) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::PreauthGone,
        sn: Some(sn.into()),
        subject: Some(out_order_no.into()),
        message: format!(
            "order {order_id} ({out_order_no}): the pre-authorisation is gone and {owed_fen} fen could not be charged; it is owed"
        ),
        detail: Some(serde_json::json!({ "order_id": order_id, "out_order_no": out_order_no }).to_string()),
    }
}

/// The platform refused for good to release a hold Heft cancelled: the shopper's money stays
/// frozen until a person releases it on the platform's console.
pub fn release_failed(sn: &str, order_id: i64, out_order_no: &str, reason: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::ReleaseFailed,
        sn: Some(sn.into()),
        subject: Some(out_order_no.into()),
        message: format!(
            "order {order_id} ({out_order_no}): the platform refused to release the shopper's hold ({reason}); release it on the platform's console"
        ),
        detail: Some(serde_json::json!({ "order_id": order_id, "out_order_no": out_order_no }).to_string()),
    }
}

/// A money message (`what`: a charge, a release, a refund) the platform cannot read: our side
/// is wrong (a key, a signature, a parameter). Heft keeps trying in later rounds; a person mends
/// the cause.
pub fn payment_stuck(sn: Option<&str>, order_id: i64, subject: &str, what: &str, error: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::PaymentStuck,
        sn: sn.map(str::to_string),
        subject: Some(subject.into()),
        message: format!(
            "order {order_id} ({subject}): the {what} keeps failing on our side ({error}); Heft tries again in later rounds — check the platform keys and configuration"
        ),
        detail: Some(serde_json::json!({ "order_id": order_id, "subject": subject, "error": error }).to_string()),
    }
}

/// A refund the platform refused or gave up on: the shopper is owed money Heft could not return.
pub fn refund_failed(sn: Option<&str>, out_refund_no: &str, amount_fen: Fen, order_id: i64, reason: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::RefundFailed,
        sn: sn.map(str::to_string),
        subject: Some(out_refund_no.into()),
        message: format!(
            "refund {out_refund_no} of {amount_fen} fen on order {order_id} failed ({reason}): give it back another way"
        ),
        detail: Some(serde_json::json!({ "out_refund_no": out_refund_no, "order_id": order_id }).to_string()),
    }
}

// --- reconciliation ---------------------------------------------------------------------

/// A platform's bill still not out `hours` after Heft first looked for it; Heft keeps trying.
pub fn bill_missing(channel: &str, day: &str, hours: i64, error: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::BillMissing,
        sn: None,
        subject: Some(format!("{channel} {day}")),
        message: format!(
            "the {channel} bill for {day} is still not available after {hours} h ({error}); Heft keeps trying — check the merchant platform"
        ),
        detail: Some(serde_json::json!({ "channel": channel, "day": day, "error": error }).to_string()),
    }
}

/// A night's bill opened cases for a person to look at.
pub fn bill_cases(channel: &str, day: &str, opened: usize) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::BillCases,
        sn: None,
        subject: Some(format!("{channel} {day}")),
        message: format!(
            "the {channel} bill for {day} disagrees with Heft in {opened} place(s): see GET /ops/bill-cases?channel={channel}&day={day}"
        ),
        detail: Some(serde_json::json!({ "channel": channel, "day": day, "opened": opened }).to_string()),
    }
}

/// A nightly job failed for a reason retrying will not mend by itself (a bill Heft cannot read,
/// our side's keys).
pub fn reconcile_failed(job: &str, day: &str, error: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::ReconcileFailed,
        sn: None,
        subject: Some(format!("{job} {day}")),
        message: format!("reconciliation {job} for {day} failed: {error}; Heft tries again later"),
        detail: Some(serde_json::json!({ "job": job, "day": day, "error": error }).to_string()),
    }
}

/// Lanes the nightly stocktake could not read: not a loss, a cell or calibration to look at.
pub fn stock_unreadable(sn: &str, day: &str, lanes: &[(String, &'static str)]) -> AlertSpec {
    let each: Vec<String> = lanes.iter().map(|(lane, why)| format!("{lane} ({why})")).collect();
    AlertSpec {
        audience: Audience::Maintenance,
        severity: Severity::Warning,
        code: AlertCode::StockUnreadable,
        sn: Some(sn.into()),
        subject: Some(day.into()),
        message: format!("cabinet {sn}: stock could not be read by weight on {day} for lane {}", each.join(", ")),
        detail: Some(serde_json::json!({ "day": day, "lanes": each }).to_string()),
    }
}

/// Units gone from a cabinet that no shopper could be charged for: a loss (损耗) for an operator to
/// look at, with the findings on the stocktake record.
pub fn stock_loss(sn: &str, day: &str, units: i64, value_fen: Fen) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::StockLoss,
        sn: Some(sn.into()),
        subject: Some(day.into()),
        message: format!("cabinet {sn}: {units} unit(s) worth {value_fen} fen lost on {day} (stocktake)"),
        detail: Some(serde_json::json!({ "day": day, "units": units, "value_fen": value_fen }).to_string()),
    }
}

// --- restock and maintenance --------------------------------------------------------------

/// A new restock task; resolved when the task is done. `wanted` is the task's list, as stored.
pub fn restock_needed(sn: &str, task_id: i64, wanted: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Info,
        code: AlertCode::RestockNeeded,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: lanes to restock (task {task_id})"),
        detail: Some(wanted.into()),
    }
}

/// Lanes whose weight change after a restock could not be counted: a person counts them.
pub fn restock_uncounted(sn: &str, uncounted: &[super::restock::Uncounted]) -> AlertSpec {
    let lanes: Vec<&str> = uncounted.iter().map(|u| u.lane.as_str()).collect();
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::RestockUncounted,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: restock on lanes {} could not be counted by weight", lanes.join(", ")),
        detail: serde_json::to_string(uncounted).ok(),
    }
}

/// Lanes whose weight moved (or could not be compared) while a maintainer had the door open.
pub fn maintenance_weight_change(sn: &str, by: &str, moved: &[super::restock::LaneMove]) -> AlertSpec {
    let lanes: Vec<&str> = moved.iter().map(|m| m.lane.as_str()).collect();
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Warning,
        code: AlertCode::MaintenanceWeightChange,
        sn: Some(sn.into()),
        subject: None,
        message: format!("cabinet {sn}: weight changed on lanes {} during maintenance by {by}", lanes.join(", ")),
        detail: serde_json::to_string(moved).ok(),
    }
}

// --- messages -----------------------------------------------------------------------------

/// A message given up on after `attempts` failed handlings.
pub fn message_dead(msg_id: &str, topic: &str, attempts: u32, error: &str) -> AlertSpec {
    AlertSpec {
        audience: Audience::Ops,
        severity: Severity::Critical,
        code: AlertCode::MessageDead,
        sn: None,
        subject: None,
        message: format!(
            "message {msg_id} on topic {topic} failed {attempts} times and was given up on; \
             see GET /ops/messages?status=dead and retry with POST /ops/messages/{msg_id}/retry"
        ),
        detail: Some(error.chars().take(1000).collect()),
    }
}
