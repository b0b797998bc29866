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
    /// Frames the bridge has handed to actors and they have not finished.
    pub bridge_inflight: IntGauge,
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
            bridge_inflight: IntGauge::new("heft_bridge_inflight", "Frames handed to actors, not yet handled")?,
            registry,
        };
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
        m.registry.register(Box::new(m.bridge_inflight.clone()))?;
        // Every label value exists from the start, so dashboards and tests see zeros, not gaps.
        for kind in UpKind::ALL {
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
