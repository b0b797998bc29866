//! The hub's state, changed without I/O: sockets and their subscriptions, the fleet as last
//! read, what changed since the last flush, and each socket's queue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use super::views::FleetRow;
use crate::config::LiveConfig;
use crate::db::models::{Alert, CommandRow, Order, RestockTask, ReviewCase};
use crate::domain::live::{Change, Next, Pushed, QueueLimits, SendQueue, Throttle, Topic};
use crate::domain::operator::Role;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("this node has {0} live sockets open, its limit")]
    Full(usize),
    #[error("subscription {0} is already in use on this socket")]
    Taken(u64),
    #[error("a socket may hold {0} subscriptions")]
    TooMany(usize),
    #[error("role {role} may not follow {topic}")]
    Forbidden { role: Role, topic: String },
    #[error("no cabinet {0}")]
    NoCabinet(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// One message body, serialised once for every socket it goes to.
#[derive(Debug, PartialEq)]
pub struct Out {
    /// The delta's `kind`: `cabinet`, `door`, `weights`, `order`, `alert`, `review`, `restock`,
    /// `command`.
    pub kind: &'static str,
    /// JSON.
    pub data: String,
}

impl Out {
    fn of(kind: &'static str, data: &impl Serialize) -> Arc<Out> {
        Arc::new(Out { kind, data: serde_json::to_string(data).unwrap_or_else(|_| "null".into()) })
    }
}

/// Rows a flush read by the keys the changes named.
#[derive(Debug, Default)]
pub struct Read {
    pub orders: Vec<Order>,
    pub alerts: Vec<Alert>,
    pub cases: Vec<ReviewCase>,
    pub tasks: Vec<RestockTask>,
    pub commands: Vec<CommandRow>,
    pub runs: Vec<crate::flows::reconcile::RunView>,
}

/// What a socket sends next.
#[derive(Debug, PartialEq)]
pub enum Popped {
    Empty,
    /// The subscription's snapshot is due; `resync` when it is not its first.
    Snapshot {
        sub: u64,
        topic: Topic,
        resync: bool,
    },
    Delta {
        sub: u64,
        out: Arc<Out>,
    },
    /// Close the socket, saying why.
    Close(String),
}

/// What the next flush reads or sends.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Cabinets whose stored state is read again.
    pub cabinets: BTreeSet<String>,
    /// Cabinets whose row changed in memory only (doors, temperature).
    pub rows: BTreeSet<String>,
    pub orders: BTreeSet<i64>,
    pub alerts: BTreeSet<i64>,
    pub reviews: BTreeSet<i64>,
    pub tasks: BTreeSet<i64>,
    pub commands: BTreeSet<String>,
    pub operators: BTreeSet<i64>,
    /// Reconciliation runs, by job and day.
    pub runs: BTreeSet<(String, String)>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.cabinets.is_empty()
            && self.rows.is_empty()
            && self.orders.is_empty()
            && self.alerts.is_empty()
            && self.reviews.is_empty()
            && self.tasks.is_empty()
            && self.commands.is_empty()
            && self.operators.is_empty()
            && self.runs.is_empty()
    }
}

struct Sub {
    topic: Topic,
    /// Its first snapshot has not gone out yet.
    fresh: bool,
}

struct Socket {
    operator: i64,
    role: Role,
    queue: SendQueue<Arc<Out>>,
    subs: HashMap<u64, Sub>,
    wake: Arc<Notify>,
    close: Option<String>,
}

/// An open alert as last sent: what tells a new occurrence from none.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    sn: Option<String>,
    occurrences: i64,
}

pub struct HubState {
    limits: QueueLimits,
    next_socket: u64,
    sockets: HashMap<u64, Socket>,
    by_topic: HashMap<Topic, BTreeSet<(u64, u64)>>,
    /// Every cabinet's row, once someone followed the fleet, a cabinet or the alerts.
    fleet: Option<BTreeMap<String, FleetRow>>,
    open_alerts: HashMap<i64, Seen>,
    fleet_rate: Throttle<()>,
    weights_rate: Throttle<Arc<Out>>,
    /// Cabinets whose stored state changed since their row last went out.
    stale: BTreeSet<String>,
    dirty: Dirty,
}

impl HubState {
    pub fn new(cfg: &LiveConfig) -> HubState {
        HubState {
            limits: QueueLimits {
                capacity: cfg.queue_capacity,
                max_resyncs: cfg.max_resyncs,
                window: Duration::from_secs(cfg.resync_window_s),
            },
            next_socket: 1,
            sockets: HashMap::new(),
            by_topic: HashMap::new(),
            fleet: None,
            open_alerts: HashMap::new(),
            fleet_rate: Throttle::new(Duration::from_millis(cfg.fleet_interval_ms)),
            weights_rate: Throttle::new(Duration::from_millis(cfg.weights_interval_ms)),
            stale: BTreeSet::new(),
            dirty: Dirty::default(),
        }
    }

    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// The longest queue of any socket.
    pub fn longest_queue(&self) -> usize {
        self.sockets.values().map(|s| s.queue.len()).max().unwrap_or(0)
    }

    pub fn open(&mut self, operator: i64, role: Role, _cfg: &LiveConfig) -> (u64, Arc<Notify>) {
        let id = self.next_socket;
        self.next_socket += 1;
        let wake = Arc::new(Notify::new());
        let socket = Socket {
            operator,
            role,
            queue: SendQueue::new(self.limits),
            subs: HashMap::new(),
            wake: wake.clone(),
            close: None,
        };
        self.sockets.insert(id, socket);
        (id, wake)
    }

    pub fn close(&mut self, socket: u64) {
        if let Some(s) = self.sockets.remove(&socket) {
            for (sub, Sub { topic, .. }) in s.subs {
                self.unindex(&topic, socket, sub);
            }
        }
    }

    fn unindex(&mut self, topic: &Topic, socket: u64, sub: u64) {
        if let Some(set) = self.by_topic.get_mut(topic) {
            set.remove(&(socket, sub));
            if set.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    pub fn subscribe(&mut self, socket: u64, sub: u64, topic: Topic, max: usize) -> Result<(), LiveError> {
        let Some(s) = self.sockets.get_mut(&socket) else { return Ok(()) };
        if s.subs.contains_key(&sub) {
            return Err(LiveError::Taken(sub));
        }
        if s.subs.len() >= max {
            return Err(LiveError::TooMany(max));
        }
        if !topic.allowed(s.role) {
            return Err(LiveError::Forbidden { role: s.role, topic: topic.to_string() });
        }
        s.subs.insert(sub, Sub { topic: topic.clone(), fresh: true });
        s.queue.owe_snapshot(sub);
        s.wake.notify_one();
        self.by_topic.entry(topic).or_default().insert((socket, sub));
        Ok(())
    }

    pub fn unsubscribe(&mut self, socket: u64, sub: u64) -> bool {
        let Some(s) = self.sockets.get_mut(&socket) else { return false };
        let Some(Sub { topic, .. }) = s.subs.remove(&sub) else { return false };
        s.queue.forget(sub);
        self.unindex(&topic, socket, sub);
        true
    }

    pub fn topic(&self, socket: u64, sub: u64) -> Option<Topic> {
        self.sockets.get(&socket)?.subs.get(&sub).map(|s| s.topic.clone())
    }

    pub fn pop(&mut self, socket: u64) -> Popped {
        let Some(s) = self.sockets.get_mut(&socket) else { return Popped::Close("socket closed".into()) };
        if let Some(why) = &s.close {
            return Popped::Close(why.clone());
        }
        loop {
            match s.queue.pop() {
                None => return Popped::Empty,
                Some(Next::Message { sub, body }) => return Popped::Delta { sub, out: body },
                Some(Next::Resync(sub)) => {
                    // One unsubscribed meanwhile owes nothing.
                    let Some(state) = s.subs.get_mut(&sub) else { continue };
                    let resync = !std::mem::replace(&mut state.fresh, false);
                    return Popped::Snapshot { sub, topic: state.topic.clone(), resync };
                }
            }
        }
    }

    /// Queue `out` for every subscription of `topic`; with `key`, only its latest value waits.
    fn deliver(&mut self, topic: &Topic, key: Option<&str>, out: &Arc<Out>, now: Instant) {
        let Some(subs) = self.by_topic.get(topic) else { return };
        let limits = self.limits;
        for &(socket, sub) in subs {
            let Some(s) = self.sockets.get_mut(&socket) else { continue };
            match s.queue.push(sub, key, out.clone(), now) {
                Pushed::Queued | Pushed::Behind => s.wake.notify_one(),
                Pushed::Coalesced => {}
                Pushed::Close => {
                    s.close = Some(format!(
                        "too slow: fell behind more than {} times within {} s",
                        limits.max_resyncs,
                        limits.window.as_secs()
                    ));
                    s.wake.notify_one();
                }
            }
        }
    }

    fn watched(&self, topic: &Topic) -> bool {
        self.by_topic.contains_key(topic)
    }

    fn any_cabinet_watched(&self) -> bool {
        self.by_topic.keys().any(|t| matches!(t, Topic::Cabinet(_)))
    }

    fn cabinet_topic(sn: &str) -> Option<Topic> {
        crate::domain::cabinet::Sn::parse(sn).ok().map(Topic::Cabinet)
    }

    pub fn fleet_loaded(&self) -> bool {
        self.fleet.is_some()
    }

    /// Whether a change to a cabinet's row matters to anyone.
    fn rows_followed(&self, sn: &str) -> bool {
        self.fleet.is_some() || Self::cabinet_topic(sn).is_some_and(|t| self.watched(&t))
    }

    /// Take note of a change (see `Hub::hear`).
    pub fn hear(&mut self, change: &Change, now: Instant) {
        match change {
            Change::Cabinet { sn } => {
                if self.rows_followed(sn) {
                    self.stale.insert(sn.clone());
                    self.offer_row(sn, now);
                }
            }
            Change::Door { sn, door, opened, open, at_ms } => {
                if let Some(row) = self.fleet.as_mut().and_then(|f| f.get_mut(sn)) {
                    row.doors_open = open.clone();
                    self.offer_row(sn, now);
                }
                if let Some(topic) = Self::cabinet_topic(sn) {
                    let door = serde_json::json!({"door": door, "opened": opened, "open": open, "at_ms": at_ms});
                    self.deliver(&topic, None, &Out::of("door", &door), now);
                }
            }
            Change::Temperature { sn, temp_c } => {
                // Heartbeats repeat the temperature; only a change is news (to 0.1 °C).
                let temp_c = (temp_c * 10.0).round() / 10.0;
                if let Some(row) = self.fleet.as_mut().and_then(|f| f.get_mut(sn))
                    && row.temperature_c != Some(temp_c)
                {
                    row.temperature_c = Some(temp_c);
                    self.offer_row(sn, now);
                }
            }
            Change::Weights { sn, at_ms, lanes } => {
                let Some(topic) = Self::cabinet_topic(sn).filter(|t| self.watched(t)) else { return };
                let out = Out::of("weights", &serde_json::json!({"at_ms": at_ms, "lanes": lanes}));
                if let Some(out) = self.weights_rate.offer(sn, out, now) {
                    self.deliver(&topic, Some("weights"), &out, now);
                }
            }
            Change::Command { sn, cmd_id } => {
                if Self::cabinet_topic(sn).is_some_and(|t| self.watched(&t)) {
                    self.dirty.commands.insert(cmd_id.clone());
                }
            }
            Change::Order { id } => {
                if self.watched(&Topic::Orders) || self.any_cabinet_watched() {
                    self.dirty.orders.insert(*id);
                }
            }
            Change::Alert { id } => {
                if self.watched(&Topic::Alerts) || self.any_cabinet_watched() || self.fleet.is_some() {
                    self.dirty.alerts.insert(*id);
                }
            }
            Change::Review { id } => {
                if self.watched(&Topic::Reviews) {
                    self.dirty.reviews.insert(*id);
                }
            }
            Change::Restock { id } => {
                if self.watched(&Topic::Restock) || self.any_cabinet_watched() {
                    self.dirty.tasks.insert(*id);
                }
            }
            Change::Operator { id } => {
                if self.sockets.values().any(|s| s.operator == *id) {
                    self.dirty.operators.insert(*id);
                }
            }
            Change::Reconcile { job, day } => {
                if self.watched(&Topic::Reconcile) {
                    self.dirty.runs.insert((job.to_string(), day.clone()));
                }
            }
        }
    }

    fn offer_row(&mut self, sn: &str, now: Instant) {
        if self.fleet_rate.offer(sn, (), now).is_some() {
            self.dirty.rows.insert(sn.to_string());
        }
    }

    /// What changed since the last flush, with held rows and weights now due (the weights go out
    /// here: nothing to read for them).
    pub fn take_dirty(&mut self, now: Instant) -> Dirty {
        for (sn, ()) in self.fleet_rate.due(now) {
            self.dirty.rows.insert(sn);
        }
        for (sn, out) in self.weights_rate.due(now) {
            if let Some(topic) = Self::cabinet_topic(&sn) {
                self.deliver(&topic, Some("weights"), &out, now);
            }
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        let (stale, fresh): (BTreeSet<String>, BTreeSet<String>) =
            std::mem::take(&mut dirty.rows).into_iter().partition(|sn| self.stale.contains(sn));
        for sn in &stale {
            self.stale.remove(sn);
        }
        dirty.cabinets = stale;
        dirty.rows = fresh;
        dirty
    }

    /// Every cabinet's row and open alert, read afresh.
    pub fn fleet_loaded_with(&mut self, rows: BTreeMap<String, FleetRow>, open: Vec<Alert>) {
        let old = self.fleet.take().unwrap_or_default();
        let rows = rows.into_iter().map(|(sn, row)| {
            let row = match old.get(&sn) {
                Some(was) => Self::keep_reported(row, was),
                None => row,
            };
            (sn, row)
        });
        self.fleet = Some(rows.collect());
        self.open_alerts =
            open.into_iter().map(|a| (a.id, Seen { sn: a.sn.clone(), occurrences: a.occurrences })).collect();
    }

    /// What the cabinet reported live and the database does not hold, kept across a read.
    fn keep_reported(mut row: FleetRow, was: &FleetRow) -> FleetRow {
        row.doors_open = was.doors_open.clone();
        if row.temperature_c.is_none() {
            row.temperature_c = was.temperature_c;
        }
        row
    }

    /// Cabinets read again (`Dirty::cabinets`): their rows, and their open alerts now.
    pub fn cabinets_read(&mut self, sns: &[String], rows: BTreeMap<String, FleetRow>, open: Vec<Alert>) {
        let now = Instant::now();
        for (sn, row) in rows {
            let row = match self.fleet.as_ref().and_then(|f| f.get(&sn)) {
                Some(was) => Self::keep_reported(row, was),
                None => row,
            };
            self.send_row(&row, now);
            if let Some(fleet) = self.fleet.as_mut() {
                fleet.insert(sn, row);
            }
        }
        let now_open: BTreeSet<i64> = open.iter().map(|a| a.id).collect();
        for alert in &open {
            let seen = Seen { sn: alert.sn.clone(), occurrences: alert.occurrences };
            if self.open_alerts.get(&alert.id) != Some(&seen) {
                self.open_alerts.insert(alert.id, seen);
                self.send_alert(alert, now);
            }
        }
        // Known open, and not any more: read at the next flush, to show how it ended.
        let closed: Vec<i64> = self
            .open_alerts
            .iter()
            .filter(|(id, seen)| seen.sn.as_ref().is_some_and(|sn| sns.contains(sn)) && !now_open.contains(id))
            .map(|(id, _)| *id)
            .collect();
        self.dirty.alerts.extend(closed);
    }

    /// Rows changed in memory (`Dirty::rows`).
    pub fn rows_changed(&mut self, sns: &BTreeSet<String>) {
        let now = Instant::now();
        let rows: Vec<FleetRow> =
            sns.iter().filter_map(|sn| self.fleet.as_ref().and_then(|f| f.get(sn)).cloned()).collect();
        for row in rows {
            self.send_row(&row, now);
        }
    }

    fn send_row(&mut self, row: &FleetRow, now: Instant) {
        let out = Out::of("cabinet", row);
        self.deliver(&Topic::Fleet, Some(&row.sn), &out, now);
        if let Some(topic) = Self::cabinet_topic(&row.sn) {
            self.deliver(&topic, Some("cabinet"), &out, now);
        }
    }

    fn send_alert(&mut self, alert: &Alert, now: Instant) {
        let out = Out::of("alert", alert);
        let key = format!("alert:{}", alert.id);
        self.deliver(&Topic::Alerts, Some(&key), &out, now);
        if let Some(topic) = alert.sn.as_deref().and_then(Self::cabinet_topic) {
            self.deliver(&topic, Some(&key), &out, now);
        }
    }

    /// Rows a flush read by their keys.
    pub fn rows_read(&mut self, read: Read) {
        let now = Instant::now();
        let Read { orders, alerts, cases, tasks, commands, runs } = read;
        for o in &orders {
            let (out, key) = (Out::of("order", o), format!("order:{}", o.id));
            self.deliver(&Topic::Orders, Some(&key), &out, now);
            if let Some(topic) = Self::cabinet_topic(&o.sn) {
                self.deliver(&topic, Some(&key), &out, now);
            }
        }
        for a in &alerts {
            match a.resolved_at {
                None => self.open_alerts.insert(a.id, Seen { sn: a.sn.clone(), occurrences: a.occurrences }),
                Some(_) => self.open_alerts.remove(&a.id),
            };
            self.send_alert(a, now);
        }
        for c in &cases {
            self.deliver(&Topic::Reviews, Some(&format!("review:{}", c.id)), &Out::of("review", c), now);
        }
        for t in &tasks {
            let (out, key) = (Out::of("restock", t), format!("restock:{}", t.id));
            self.deliver(&Topic::Restock, Some(&key), &out, now);
            if let Some(topic) = Self::cabinet_topic(&t.sn) {
                self.deliver(&topic, Some(&key), &out, now);
            }
        }
        for c in &commands {
            if let Some(topic) = Self::cabinet_topic(&c.sn) {
                self.deliver(&topic, Some(&format!("command:{}", c.id)), &Out::of("command", c), now);
            }
        }
        for r in &runs {
            let key = format!("run:{}:{}", r.run.job, r.run.day);
            self.deliver(&Topic::Reconcile, Some(&key), &Out::of("run", r), now);
        }
    }

    /// Operator `id` as stored now (`None`: gone): sockets of a disabled one, or of one whose
    /// role changed, are closed.
    pub fn operator_is(&mut self, id: i64, now: Option<(bool, Role)>) {
        for s in self.sockets.values_mut().filter(|s| s.operator == id) {
            let why = match now {
                None | Some((false, _)) => Some("account disabled".to_string()),
                Some((true, role)) if role != s.role => Some(format!("role changed to {role}: sign in again")),
                Some(_) => None,
            };
            if let Some(why) = why {
                s.close = Some(why);
                s.wake.notify_one();
            }
        }
    }

    /// Every subscription starts again from a fresh snapshot.
    pub fn resync_all(&mut self) {
        for s in self.sockets.values_mut() {
            let subs: Vec<u64> = s.subs.iter().filter(|(_, sub)| !sub.fresh).map(|(n, _)| *n).collect();
            for sub in subs {
                s.queue.owe_snapshot(sub);
            }
            s.wake.notify_one();
        }
    }

    /// The fleet's rows as JSON (`None` until read).
    pub fn fleet_json(&self) -> Option<String> {
        let rows: Vec<&FleetRow> = self.fleet.as_ref()?.values().collect();
        serde_json::to_string(&rows).ok()
    }

    pub fn fleet_row(&self, sn: &str) -> Option<FleetRow> {
        self.fleet.as_ref()?.get(sn).cloned()
    }
}
