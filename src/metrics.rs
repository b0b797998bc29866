//! Prometheus metrics, served at `/metrics`. One registry per running Heft, so several instances
//! in one test process do not share counts.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::device::frame::Reject;
use crate::device::topic::UpKind;
use crate::domain::reconcile::{Job, RunStatus};

/// Buckets of `heft_frame_latency_seconds` (the ingest benchmark's bare-broker reader uses the same).
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Buckets of `heft_weight_log_batch_rows`: a batch holds 1 to `weight_log.batch_rows` rows.
pub const BATCH_ROWS_BUCKETS: [f64; 12] =
    [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 5000.0];

/// Buckets of `heft_reconcile_run_seconds`: one job for one day, from a small fleet's seconds to
/// a large one's minutes.
pub const RUN_SECONDS_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 180.0, 600.0, 1800.0];

/// Buckets of `heft_weight_log_write_seconds`: one batch, from taking a connection to commit.
pub const WRITE_SECONDS_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Metrics registered as they are made, so none is made and left out.
struct Registering(Registry);

impl Registering {
    fn keep<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> Result<C, MetricsError> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.keep(IntGauge::new(name, help)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        self.keep(Gauge::new(name, help)?)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.keep(IntCounter::new(name, help)?)
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, MetricsError> {
        self.keep(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, MetricsError> {
        self.keep(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?)
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, MetricsError> {
        self.keep(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?)
    }
}

/// The metrics of a node, declared once each: its field, its type, how it is made (name, help,
/// labels or buckets).
macro_rules! metrics {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $make:ident($($arg:expr),* $(,)?), )*) => {
        #[derive(Clone)]
        pub struct Metrics {
            registry: Registry,
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl Metrics {
            /// Every metric, registered in a registry of its own.
            fn make() -> Result<Metrics, MetricsError> {
                let r = Registering(Registry::new());
                Ok(Metrics { $( $field: r.$make($($arg),*)?, )* registry: r.0 })
            }
        }
    };
}

metrics! {
    /// Live-view websockets open on this node.
    live_sockets: IntGauge = int_gauge("heft_live_sockets", "Live-view websockets open on this node"),
    /// Changes the live hub heard (from this node and the others).
    live_changes: IntCounter = counter("heft_live_changes_total", "Changes the live hub heard"),
    /// Messages sent to live-view sockets, by type (snapshot, delta, resync).
    live_sent: IntCounterVec = counters("heft_live_sent_total", "Messages sent to live-view sockets", &["type"]),
    /// Bytes sent to live-view sockets.
    live_bytes: IntCounter = counter("heft_live_sent_bytes_total", "Bytes sent to live-view sockets"),
    /// Live-view sockets closed by the server, by reason (unauthenticated, slow, disabled, idle).
    live_closed: IntCounterVec = counters("heft_live_closed_total", "Live-view sockets closed by the server", &["reason"]),
    /// Cabinets logged in on this node and not judged offline.
    cabinets_connected: IntGauge = int_gauge("heft_cabinets_connected", "Cabinets logged in on this node and not offline"),
    /// Cabinet actors alive on this node.
    cabinet_actors: IntGauge = int_gauge("heft_cabinet_actors", "Cabinet actors alive on this node"),
    actor_restarts: IntCounter = counter("heft_cabinet_actor_restarts_total", "Cabinet actors restarted after a crash"),
    /// Accepted frames by kind.
    frames: IntCounterVec = counters("heft_frames_total", "Accepted upstream frames by kind", &["kind"]),
    /// Dropped frames by reason.
    frames_rejected: IntCounterVec =
        counters("heft_frames_rejected_total", "Dropped upstream frames by reason", &["reason"]),
    /// Share of tracked cabinets heard from within the liveness window (last watchdog round).
    heartbeat_ratio: Gauge =
        gauge("heft_heartbeat_ratio", "Share of tracked cabinets heard from within the liveness window"),
    heartbeats: IntCounter = counter("heft_heartbeats_total", "Heartbeats accepted"),
    commands_sent: IntCounterVec =
        counters("heft_commands_sent_total", "Commands sent to cabinets, retries included, by kind", &["kind"]),
    commands_finished: IntCounterVec =
        counters("heft_commands_finished_total", "Commands that ended, by kind and status", &["kind", "status"]),
    liveness_transitions: IntCounterVec =
        counters("heft_liveness_transitions_total", "Cabinet liveness changes by new state", &["to"]),
    mqtt_auth: IntCounterVec = counters("heft_mqtt_auth_total", "MQTT connection attempts by result", &["result"]),
    /// From the frame's `ts` (cabinet clock) to the cabinet actor having handled it.
    frame_latency: Histogram = histogram(
        "heft_frame_latency_seconds",
        "Frame ts (cabinet clock) to handled by its actor",
        &LATENCY_BUCKETS,
    ),
    /// Door closed → every lane stable (the settlement's wait).
    settle_seconds: Histogram = histogram(
        "heft_settle_seconds",
        "Door closed to every lane stable",
        &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 10.0],
    ),
    /// Frames the bridge has handed to actors and they have not finished.
    bridge_inflight: IntGauge = int_gauge("heft_bridge_inflight", "Frames handed to actors, not yet handled"),
    /// Weight log rows written.
    weight_log_rows: IntCounter = counter("heft_weight_log_rows_total", "Weight log rows written"),
    weight_log_batches: IntCounter = counter("heft_weight_log_batches_total", "Weight log batches written"),
    weight_log_batch_rows: Histogram =
        histogram("heft_weight_log_batch_rows", "Rows per weight log batch written", &BATCH_ROWS_BUCKETS),
    /// Successful batch writes, from taking a connection to commit.
    weight_log_write_seconds: Histogram =
        histogram("heft_weight_log_write_seconds", "Time to write one weight log batch", &WRITE_SECONDS_BUCKETS),
    /// Rows recorded and not yet written.
    weight_log_queue_rows: IntGauge =
        int_gauge("heft_weight_log_queue_rows", "Weight log rows recorded and not yet written"),
    /// Rows dropped because the queue was full (or the writer had stopped).
    weight_log_dropped: IntCounter =
        counter("heft_weight_log_dropped_total", "Weight log rows dropped because the queue was full"),
    /// Failed batch writes (each retried).
    weight_log_write_errors: IntCounter =
        counter("heft_weight_log_write_errors_total", "Failed weight log batch writes (retried)"),
    /// Age of the oldest due, undelivered outbox row.
    outbox_lag: Gauge = gauge("heft_outbox_lag_seconds", "Age of the oldest due, undelivered outbox row"),
    /// Messages handled by this node's consumers, by topic.
    messages_delivered: IntCounterVec =
        counters("heft_messages_delivered_total", "Messages handled by this node's consumers, by topic", &["topic"]),
    /// Failed handlings (or refused publishes) that will be tried again, by topic.
    messages_retried: IntCounterVec = counters(
        "heft_messages_retried_total",
        "Failed message deliveries to be tried again, by topic",
        &["topic"],
    ),
    /// Messages given up on after `messages.max_attempts`, by topic.
    messages_dead: IntCounterVec =
        counters("heft_messages_dead_total", "Messages given up on after max_attempts, by topic", &["topic"]),
    /// Payment platform callbacks by channel and outcome (applied, duplicate, unverified, …).
    payment_callbacks: IntCounterVec = counters(
        "heft_payment_callbacks_total",
        "Payment platform callbacks by channel and outcome",
        &["channel", "outcome"],
    ),
    /// Nightly reconciliation runs by job and how they ended (done, waiting, failed).
    reconcile_runs: IntCounterVec =
        counters("heft_reconcile_runs_total", "Reconciliation runs by job and outcome", &["job", "status"]),
    /// How long each run took.
    reconcile_seconds: HistogramVec = histograms(
        "heft_reconcile_run_seconds",
        "Time one reconciliation run took, by job",
        &RUN_SECONDS_BUCKETS,
        &["job"],
    ),
    /// Bill rows reconciled.
    reconcile_rows: IntCounterVec =
        counters("heft_reconcile_bill_rows_total", "Platform bill rows reconciled, by job", &["job"]),
    /// Cabinets whose ownership lease this node holds.
    cabinets_owned: IntGauge = int_gauge("heft_cabinets_owned", "Cabinets whose ownership lease this node holds"),
    /// Renewal rounds of the ownership leases that failed (the cache did not answer).
    lease_renew_failures: IntCounter =
        counter("heft_lease_renew_failures_total", "Ownership lease renewal rounds that failed"),
    /// Ownership leases lost: taken by another node, or lapsed.
    leases_lost: IntCounter = counter("heft_leases_lost_total", "Ownership leases lost to another node or expiry"),
    /// Requests routed to the node that owns their cabinet, by outcome (ok, not_owner, unreachable).
    route_requests: IntCounterVec =
        counters("heft_route_requests_total", "Requests routed to the cabinet's owner node, by outcome", &["outcome"]),
    /// Round trips of requests routed to another node.
    route_seconds: Histogram = histogram(
        "heft_route_seconds",
        "Round trip of a request routed to the cabinet's owner node",
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0],
    ),
    /// Cases opened for a person to look at.
    reconcile_cases_opened: IntCounterVec =
        counters("heft_reconcile_cases_opened_total", "Reconciliation cases opened, by job", &["job"]),
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let m = Metrics::make()?;
        // Every label value exists from the start, so dashboards and tests see zeros, not gaps.
        for kind in UpKind::ALL.iter().copied() {
            m.frames.with_label_values(&[kind.as_str()]);
        }
        for outcome in ["ok", "not_owner", "unreachable"] {
            m.route_requests.with_label_values(&[outcome]);
        }
        for reason in Reject::ALL {
            m.frames_rejected.with_label_values(&[reason.as_str()]);
        }
        for job in Job::ALL.iter().map(|j| j.as_str()) {
            for status in [RunStatus::Done, RunStatus::Waiting, RunStatus::Failed] {
                m.reconcile_runs.with_label_values(&[job, status.as_str()]);
            }
            m.reconcile_rows.with_label_values(&[job]);
            m.reconcile_cases_opened.with_label_values(&[job]);
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
