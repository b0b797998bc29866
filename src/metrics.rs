//! Prometheus metrics, served at `/metrics`. One registry per running Heft, so several instances
//! in one test process do not share counts.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::device::frame::Reject;
use crate::device::topic::UpKind;

/// Buckets of `heft_frame_latency_seconds` (the ingest benchmark's bare-broker reader uses the same).
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Buckets of `heft_weight_log_batch_rows`: a batch holds 1 to `weight_log.batch_rows` rows.
pub const BATCH_ROWS_BUCKETS: [f64; 12] =
    [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 5000.0];

/// Buckets of `heft_weight_log_write_seconds`: one batch, from taking a connection to commit.
pub const WRITE_SECONDS_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Cabinets logged in on this node and not judged offline.
    pub cabinets_connected: IntGauge,
    /// Cabinet actors alive on this node.
    pub cabinet_actors: IntGauge,
    pub actor_restarts: IntCounter,
    /// Accepted frames by kind.
    pub frames: IntCounterVec,
    /// Dropped frames by reason.
    pub frames_rejected: IntCounterVec,
    /// Share of tracked cabinets heard from within the liveness window (last watchdog round).
    pub heartbeat_ratio: Gauge,
    pub heartbeats: IntCounter,
    pub commands_sent: IntCounterVec,
    pub commands_finished: IntCounterVec,
    pub liveness_transitions: IntCounterVec,
    pub mqtt_auth: IntCounterVec,
    /// From the frame's `ts` (cabinet clock) to the cabinet actor having handled it.
    pub frame_latency: Histogram,
    /// Door closed → every lane stable (the settlement's wait).
    pub settle_seconds: Histogram,
    /// Frames the bridge has handed to actors and they have not finished.
    pub bridge_inflight: IntGauge,
    /// Weight log rows written.
    pub weight_log_rows: IntCounter,
    pub weight_log_batches: IntCounter,
    pub weight_log_batch_rows: Histogram,
    /// Successful batch writes, from taking a connection to commit.
    pub weight_log_write_seconds: Histogram,
    /// Rows recorded and not yet written.
    pub weight_log_queue_rows: IntGauge,
    /// Rows dropped because the queue was full (or the writer had stopped).
    pub weight_log_dropped: IntCounter,
    /// Failed batch writes (each retried).
    pub weight_log_write_errors: IntCounter,
    /// Age of the oldest due, undelivered outbox row.
    pub outbox_lag: Gauge,
    /// Messages handled by this node's consumers, by topic.
    pub messages_delivered: IntCounterVec,
    /// Failed handlings (or refused publishes) that will be tried again, by topic.
    pub messages_retried: IntCounterVec,
    /// Messages given up on after `messages.max_attempts`, by topic.
    pub messages_dead: IntCounterVec,
    /// Payment platform callbacks by channel and outcome (applied, duplicate, unverified, …).
    pub payment_callbacks: IntCounterVec,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let m = Metrics {
            cabinets_connected: IntGauge::new(
                "heft_cabinets_connected",
                "Cabinets logged in on this node and not offline",
            )?,
            cabinet_actors: IntGauge::new("heft_cabinet_actors", "Cabinet actors alive on this node")?,
            actor_restarts: IntCounter::new(
                "heft_cabinet_actor_restarts_total",
                "Cabinet actors restarted after a crash",
            )?,
            payment_callbacks: IntCounterVec::new(
                Opts::new("heft_payment_callbacks_total", "Payment platform callbacks by channel and outcome"),
                &["channel", "outcome"],
            )?,
            frames: IntCounterVec::new(Opts::new("heft_frames_total", "Accepted upstream frames by kind"), &["kind"])?,
            frames_rejected: IntCounterVec::new(
                Opts::new("heft_frames_rejected_total", "Dropped upstream frames by reason"),
                &["reason"],
            )?,
            heartbeat_ratio: Gauge::new(
                "heft_heartbeat_ratio",
                "Share of tracked cabinets heard from within the liveness window",
            )?,
            heartbeats: IntCounter::new("heft_heartbeats_total", "Heartbeats accepted")?,
            commands_sent: IntCounterVec::new(
                Opts::new("heft_commands_sent_total", "Commands sent to cabinets, retries included, by kind"),
                &["kind"],
            )?,
            commands_finished: IntCounterVec::new(
                Opts::new("heft_commands_finished_total", "Commands that ended, by kind and status"),
                &["kind", "status"],
            )?,
            liveness_transitions: IntCounterVec::new(
                Opts::new("heft_liveness_transitions_total", "Cabinet liveness changes by new state"),
                &["to"],
            )?,
            mqtt_auth: IntCounterVec::new(
                Opts::new("heft_mqtt_auth_total", "MQTT connection attempts by result"),
                &["result"],
            )?,
            frame_latency: Histogram::with_opts(
                HistogramOpts::new("heft_frame_latency_seconds", "Frame ts (cabinet clock) to handled by its actor")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            settle_seconds: Histogram::with_opts(
                HistogramOpts::new("heft_settle_seconds", "Door closed to every lane stable")
                    .buckets(vec![0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 10.0]),
            )?,
            bridge_inflight: IntGauge::new("heft_bridge_inflight", "Frames handed to actors, not yet handled")?,
            weight_log_rows: IntCounter::new("heft_weight_log_rows_total", "Weight log rows written")?,
            weight_log_batches: IntCounter::new("heft_weight_log_batches_total", "Weight log batches written")?,
            weight_log_batch_rows: Histogram::with_opts(
                HistogramOpts::new("heft_weight_log_batch_rows", "Rows per weight log batch written")
                    .buckets(BATCH_ROWS_BUCKETS.to_vec()),
            )?,
            weight_log_write_seconds: Histogram::with_opts(
                HistogramOpts::new("heft_weight_log_write_seconds", "Time to write one weight log batch")
                    .buckets(WRITE_SECONDS_BUCKETS.to_vec()),
            )?,
            weight_log_queue_rows: IntGauge::new(
                "heft_weight_log_queue_rows",
                "Weight log rows recorded and not yet written",
            )?,
            weight_log_dropped: IntCounter::new(
                "heft_weight_log_dropped_total",
                "Weight log rows dropped because the queue was full",
            )?,
            weight_log_write_errors: IntCounter::new(
                "heft_weight_log_write_errors_total",
                "Failed weight log batch writes (retried)",
            )?,
            outbox_lag: Gauge::new("heft_outbox_lag_seconds", "Age of the oldest due, undelivered outbox row")?,
            messages_delivered: IntCounterVec::new(
                Opts::new("heft_messages_delivered_total", "Messages handled by this node's consumers, by topic"),
                &["topic"],
            )?,
            messages_retried: IntCounterVec::new(
                Opts::new("heft_messages_retried_total", "Failed message deliveries to be tried again, by topic"),
                &["topic"],
            )?,
            messages_dead: IntCounterVec::new(
                Opts::new("heft_messages_dead_total", "Messages given up on after max_attempts, by topic"),
                &["topic"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.payment_callbacks.clone()))?;
        m.registry.register(Box::new(m.cabinets_connected.clone()))?;
        m.registry.register(Box::new(m.cabinet_actors.clone()))?;
        m.registry.register(Box::new(m.actor_restarts.clone()))?;
        m.registry.register(Box::new(m.frames.clone()))?;
        m.registry.register(Box::new(m.frames_rejected.clone()))?;
        m.registry.register(Box::new(m.heartbeat_ratio.clone()))?;
        m.registry.register(Box::new(m.heartbeats.clone()))?;
        m.registry.register(Box::new(m.commands_sent.clone()))?;
        m.registry.register(Box::new(m.commands_finished.clone()))?;
        m.registry.register(Box::new(m.liveness_transitions.clone()))?;
        m.registry.register(Box::new(m.mqtt_auth.clone()))?;
        m.registry.register(Box::new(m.frame_latency.clone()))?;
        m.registry.register(Box::new(m.settle_seconds.clone()))?;
        m.registry.register(Box::new(m.bridge_inflight.clone()))?;
        m.registry.register(Box::new(m.weight_log_rows.clone()))?;
        m.registry.register(Box::new(m.weight_log_batches.clone()))?;
        m.registry.register(Box::new(m.weight_log_batch_rows.clone()))?;
        m.registry.register(Box::new(m.weight_log_write_seconds.clone()))?;
        m.registry.register(Box::new(m.weight_log_queue_rows.clone()))?;
        m.registry.register(Box::new(m.weight_log_dropped.clone()))?;
        m.registry.register(Box::new(m.outbox_lag.clone()))?;
        m.registry.register(Box::new(m.messages_delivered.clone()))?;
        m.registry.register(Box::new(m.messages_retried.clone()))?;
        m.registry.register(Box::new(m.messages_dead.clone()))?;
        m.registry.register(Box::new(m.weight_log_write_errors.clone()))?;
        // Every label value exists from the start, so dashboards and tests see zeros, not gaps.
        for kind in UpKind::ALL.iter().copied() {
            m.frames.with_label_values(&[kind.as_str()]);
        }
        for reason in Reject::ALL {
            m.frames_rejected.with_label_values(&[reason.as_str()]);
        }
        m.heartbeat_ratio.set(1.0);
        Ok(m)
    }

    pub fn accepted(&self, kind: UpKind) {
        self.frames.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn rejected(&self, reason: Reject) {
        self.frames_rejected.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn rejected_count(&self, reason: Reject) -> u64 {
        self.frames_rejected.with_label_values(&[reason.as_str()]).get()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric names, which are fixed above.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
