//! The live view's rules (`/ops/live`), without I/O: what a browser may subscribe to, what one
//! socket's send queue keeps when the browser reads slower than Heft writes, and how often a
//! key's value may go out, and what changed (the [`Change`] flows and cabinet actors publish after
//! their commit). The hub (`actors::live`) decides with these and then writes.
//!
//! A slow browser never slows Heft: its queue is bounded; a value that only its latest state
//! matters for (a lane's grams, a cabinet's liveness) replaces the one still waiting under its
//! key instead of queueing behind it; and a subscription that would overflow the queue loses its
//! waiting deltas and is owed a `resync` (a fresh snapshot) instead. A socket that keeps falling
//! behind is closed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cabinet::{Sn, SnError};
use super::operator::Role;
use super::units::Grams;

/// What a subscription follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every cabinet's liveness, status, doors, session, temperature, alerts and low stock.
    Fleet,
    /// One cabinet: its lanes' grams while a door is open, door events, sessions, commands.
    Cabinet(Sn),
    Orders,
    Alerts,
    Reviews,
    Restock,
    /// The nightly reconciliation runs: each as it starts and as it ends.
    Reconcile,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("unknown topic {0:?}: fleet, cabinet/{{sn}}, orders, alerts, reviews, restock or reconcile")]
    Unknown(String),
    #[error("cabinet topic: {0}")]
    Sn(#[from] SnError),
}

impl Topic {
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        Ok(match s {
            "fleet" => Topic::Fleet,
            "orders" => Topic::Orders,
            "alerts" => Topic::Alerts,
            "reviews" => Topic::Reviews,
            "restock" => Topic::Restock,
            "reconcile" => Topic::Reconcile,
            other => match other.strip_prefix("cabinet/") {
                Some(sn) => Topic::Cabinet(Sn::parse(sn)?),
                None => return Err(TopicError::Unknown(other.to_string())),
            },
        })
    }
}

impl Topic {
    /// Whether an operator with `role` may follow this topic. The orders feed carries shoppers'
    /// money, so only the roles that run the fleet see it; the rest is what every role may read
    /// through the ops API.
    pub fn allowed(&self, role: Role) -> bool {
        match self {
            Topic::Orders | Topic::Reconcile => matches!(role, Role::Admin | Role::Operator),
            Topic::Fleet | Topic::Cabinet(_) | Topic::Alerts | Topic::Reviews | Topic::Restock => true,
        }
    }
}

/// What changed, published once the change is committed (or, for what a cabinet reports and
/// Heft does not store, once it is heard). It crosses nodes as JSON, so a browser on one node
/// sees a cabinet held by another. Stored things are named by their key and read again by the
/// hub (so a browser always gets the row as it is, whatever order changes arrive in); what is not
/// stored travels with its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A cabinet's stored state: liveness, status, its session, open alerts, stock.
    Cabinet {
        sn: String,
    },
    /// A door opened or closed; `open` is every door open now.
    Door {
        sn: String,
        door: u32,
        opened: bool,
        open: Vec<u32>,
        at_ms: i64,
    },
    Temperature {
        sn: String,
        temp_c: f64,
    },
    /// Lane grams while a door is open or the shelf settles after it closed.
    Weights {
        sn: String,
        at_ms: i64,
        lanes: Vec<LaneGrams>,
    },
    /// A command was sent or finished.
    Command {
        sn: String,
        cmd_id: String,
    },
    Order {
        id: i64,
    },
    Alert {
        id: i64,
    },
    Review {
        id: i64,
    },
    Restock {
        id: i64,
    },
    /// An operator's account changed: their sockets are checked again (disabled: closed).
    Operator {
        id: i64,
    },
    /// A reconciliation run started or ended.
    Reconcile {
        job: super::reconcile::Job,
        /// `YYYY-MM-DD`.
        day: String,
    },
}

/// One lane's grams in a [`Change::Weights`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneGrams {
    pub code: String,
    /// The latest reading.
    pub grams: Option<Grams>,
    /// The lane's weight at rest, when its recent readings show it, as precisely as its counts
    /// need.
    pub stable_g: Option<Grams>,
    /// σ of one of the lane's readings, once its closed-door stream (or calibration) showed it.
    pub noise_g: Option<Grams>,
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topic::Fleet => f.write_str("fleet"),
            Topic::Cabinet(sn) => write!(f, "cabinet/{}", sn.as_str()),
            Topic::Orders => f.write_str("orders"),
            Topic::Alerts => f.write_str("alerts"),
            Topic::Reviews => f.write_str("reviews"),
            Topic::Restock => f.write_str("restock"),
            Topic::Reconcile => f.write_str("reconcile"),
        }
    }
}

/// Limits of one socket's send queue (`[live]` in the configuration, to come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Messages waiting at most; a coalesced value takes one place however often it changes.
    pub capacity: usize,
    /// Resyncs within `window` past which the socket is closed.
    pub max_resyncs: usize,
    pub window: Duration,
}

/// What became of a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// It replaced the value waiting under its key.
    Coalesced,
    /// The subscription is owed a resync: this and its waiting messages are dropped.
    Behind,
    /// The socket kept falling behind: close it, saying so.
    Close,
}

/// What goes out next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<T> {
    /// Tell the subscription to start again from a fresh snapshot.
    Resync(u64),
    Message {
        sub: u64,
        body: T,
    },
}

/// A place in the queue: a message, or the key of a value held in `latest`.
#[derive(Debug)]
enum Slot<T> {
    Plain(u64, T),
    Keyed(u64, String),
}

/// One socket's send queue. `sub` is the client's subscription number.
#[derive(Debug)]
pub struct SendQueue<T> {
    limits: QueueLimits,
    slots: VecDeque<Slot<T>>,
    latest: HashMap<(u64, String), T>,
    behind: BTreeSet<u64>,
    resyncs: VecDeque<Instant>,
}

impl<T> SendQueue<T> {
    pub fn new(limits: QueueLimits) -> SendQueue<T> {
        SendQueue {
            limits,
            slots: VecDeque::new(),
            latest: HashMap::new(),
            behind: BTreeSet::new(),
            resyncs: VecDeque::new(),
        }
    }

    /// Messages waiting (not counting owed resyncs).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.behind.is_empty()
    }

    /// Queue `body` for subscription `sub`; with a `key`, only its latest value is kept waiting.
    pub fn push(&mut self, sub: u64, key: Option<&str>, body: T, now: Instant) -> Pushed {
        if self.behind.contains(&sub) {
            return Pushed::Behind;
        }
        if let Some(key) = key
            && let Some(waiting) = self.latest.get_mut(&(sub, key.to_string()))
        {
            *waiting = body;
            return Pushed::Coalesced;
        }
        if self.slots.len() >= self.limits.capacity {
            return self.fall_behind(sub, now);
        }
        match key {
            Some(key) => {
                self.latest.insert((sub, key.to_string()), body);
                self.slots.push_back(Slot::Keyed(sub, key.to_string()));
            }
            None => self.slots.push_back(Slot::Plain(sub, body)),
        }
        Pushed::Queued
    }

    /// The subscription's waiting messages are dropped and a resync is owed instead.
    fn fall_behind(&mut self, sub: u64, now: Instant) -> Pushed {
        self.slots.retain(|s| !matches!(s, Slot::Plain(n, _) | Slot::Keyed(n, _) if *n == sub));
        self.latest.retain(|(n, _), _| *n != sub);
        self.behind.insert(sub);
        self.resyncs.push_back(now);
        while self.resyncs.front().is_some_and(|&t| now.saturating_duration_since(t) > self.limits.window) {
            self.resyncs.pop_front();
        }
        if self.resyncs.len() > self.limits.max_resyncs { Pushed::Close } else { Pushed::Behind }
    }

    /// A new subscription: its snapshot is owed, and goes out before anything queued for it.
    /// Not counted as falling behind.
    pub fn owe_snapshot(&mut self, sub: u64) {
        self.forget(sub);
        self.behind.insert(sub);
    }

    /// A subscription ended: nothing more of it goes out.
    pub fn forget(&mut self, sub: u64) {
        self.slots.retain(|s| !matches!(s, Slot::Plain(n, _) | Slot::Keyed(n, _) if *n == sub));
        self.latest.retain(|(n, _), _| *n != sub);
        self.behind.remove(&sub);
    }

    /// The next thing to send: owed resyncs first (their snapshot supersedes anything older),
    /// then messages in the order they were first queued.
    pub fn pop(&mut self) -> Option<Next<T>> {
        if let Some(sub) = self.behind.pop_first() {
            return Some(Next::Resync(sub));
        }
        loop {
            match self.slots.pop_front()? {
                Slot::Plain(sub, body) => return Some(Next::Message { sub, body }),
                Slot::Keyed(sub, key) => {
                    if let Some(body) = self.latest.remove(&(sub, key)) {
                        return Some(Next::Message { sub, body });
                    }
                }
            }
        }
    }
}

/// At most one value per key every `interval` (fleet deltas ≈ 1 Hz per cabinet, lane grams
/// ≈ 5 Hz): a value offered too soon is held, and only the latest held goes out once due.
#[derive(Debug)]
pub struct Throttle<T> {
    interval: Duration,
    sent: HashMap<String, Instant>,
    held: HashMap<String, T>,
}

impl<T> Throttle<T> {
    pub fn new(interval: Duration) -> Throttle<T> {
        Throttle { interval, sent: HashMap::new(), held: HashMap::new() }
    }

    /// `Some(value)` to send now; `None` when it is held until the key is due.
    pub fn offer(&mut self, key: &str, value: T, now: Instant) -> Option<T> {
        match self.sent.get(key) {
            Some(&last) if now.saturating_duration_since(last) < self.interval => {
                self.held.insert(key.to_string(), value);
                None
            }
            _ => {
                self.held.remove(key);
                self.sent.insert(key.to_string(), now);
                Some(value)
            }
        }
    }

    /// The held values whose key is due, to send now.
    pub fn due(&mut self, now: Instant) -> Vec<(String, T)> {
        let ready: Vec<String> = self
            .held
            .keys()
            .filter(|k| self.sent.get(*k).is_none_or(|&t| now.saturating_duration_since(t) >= self.interval))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for key in ready {
            if let Some(value) = self.held.remove(&key) {
                self.sent.insert(key.clone(), now);
                out.push((key, value));
            }
        }
        out
    }

    /// When the next held value falls due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.keys().filter_map(|k| self.sent.get(k)).map(|&t| t + self.interval).min()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits(capacity: usize) -> QueueLimits {
        QueueLimits { capacity, max_resyncs: 2, window: Duration::from_secs(60) }
    }

    fn drain(q: &mut SendQueue<u32>) -> Vec<Next<u32>> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn topics_read_and_print_alike() {
        for t in ["fleet", "cabinet/SN-0001", "orders", "alerts", "reviews", "restock"] {
            assert_eq!(Topic::parse(t).expect(t).to_string(), t);
        }
        assert!(matches!(Topic::parse("cabinet/"), Err(TopicError::Sn(_))));
        assert!(matches!(Topic::parse("cabinet/a b"), Err(TopicError::Sn(_))));
        assert!(matches!(Topic::parse("weights"), Err(TopicError::Unknown(_))));
    }

    #[test]
    fn only_managers_follow_the_orders_feed() {
        let orders = Topic::Orders;
        assert!(orders.allowed(Role::Admin) && orders.allowed(Role::Operator));
        assert!(!orders.allowed(Role::Restocker) && !orders.allowed(Role::Maintainer));
        assert!(Topic::Fleet.allowed(Role::Restocker) && Topic::Restock.allowed(Role::Maintainer));
    }

    #[test]
    fn changes_cross_nodes_as_tagged_json() {
        let c = Change::Door { sn: "SN-1".into(), door: 1, opened: true, open: vec![1], at_ms: 5 };
        let text = serde_json::to_string(&c).expect("json");
        assert!(text.contains(r#""kind":"door""#), "{text}");
        assert_eq!(serde_json::from_str::<Change>(&text).expect("back"), c);
    }

    #[test]
    fn an_owed_snapshot_goes_first_and_drops_what_was_queued() {
        let now = Instant::now();
        let mut q = SendQueue::new(limits(10));
        q.push(1, None, 1, now);
        q.push(2, None, 2, now);
        q.owe_snapshot(1);
        assert_eq!(q.push(1, None, 3, now), Pushed::Behind, "nothing queues before its snapshot");
        assert_eq!(drain(&mut q), [Next::Resync(1), Next::Message { sub: 2, body: 2 }]);
    }

    #[test]
    fn a_key_keeps_only_its_latest_value_in_its_first_place() {
        let now = Instant::now();
        let mut q = SendQueue::new(limits(10));
        assert_eq!(q.push(1, Some("A1"), 1, now), Pushed::Queued);
        assert_eq!(q.push(1, None, 2, now), Pushed::Queued);
        assert_eq!(q.push(1, Some("A1"), 3, now), Pushed::Coalesced);
        assert_eq!(q.push(2, Some("A1"), 4, now), Pushed::Queued, "keys are per subscription");
        assert_eq!(
            drain(&mut q),
            [Next::Message { sub: 1, body: 3 }, Next::Message { sub: 1, body: 2 }, Next::Message { sub: 2, body: 4 }]
        );
    }

    #[test]
    fn overflow_owes_a_resync_and_drops_only_that_subscription() {
        let now = Instant::now();
        let mut q = SendQueue::new(limits(2));
        q.push(1, None, 1, now);
        q.push(2, None, 2, now);
        assert_eq!(q.push(1, None, 3, now), Pushed::Behind);
        assert_eq!(q.push(1, None, 4, now), Pushed::Behind, "nothing more until its resync");
        assert_eq!(drain(&mut q), [Next::Resync(1), Next::Message { sub: 2, body: 2 }]);
        assert_eq!(q.push(1, None, 5, now), Pushed::Queued, "after the resync it is fed again");
    }

    #[test]
    fn a_socket_that_keeps_falling_behind_is_closed() {
        let t0 = Instant::now();
        let mut q = SendQueue::new(limits(1));
        let fall = |q: &mut SendQueue<u32>, at: Instant| {
            q.push(1, None, 0, at);
            let pushed = q.push(1, None, 0, at);
            drain(q);
            pushed
        };
        assert_eq!(fall(&mut q, t0), Pushed::Behind);
        assert_eq!(fall(&mut q, t0 + Duration::from_secs(1)), Pushed::Behind);
        assert_eq!(fall(&mut q, t0 + Duration::from_secs(2)), Pushed::Close);
        // Resyncs long ago do not count.
        let mut q = SendQueue::new(limits(1));
        for minute in 0..5 {
            assert_eq!(fall(&mut q, t0 + Duration::from_secs(61 * minute)), Pushed::Behind);
        }
    }

    #[test]
    fn the_throttle_sends_at_most_once_per_interval_and_then_the_latest() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut th = Throttle::new(ms(200));
        assert_eq!(th.offer("A1", 1, t0), Some(1));
        assert_eq!(th.offer("A1", 2, t0 + ms(50)), None);
        assert_eq!(th.offer("A1", 3, t0 + ms(100)), None);
        assert_eq!(th.offer("B1", 9, t0 + ms(100)), Some(9), "keys are apart");
        assert_eq!(th.next_due(), Some(t0 + ms(200)));
        assert!(th.due(t0 + ms(150)).is_empty());
        assert_eq!(th.due(t0 + ms(200)), [("A1".to_string(), 3)]);
        assert_eq!(th.next_due(), None);
        assert_eq!(th.offer("A1", 4, t0 + ms(300)), None, "200 ms after the held value went");
    }

    /// What one subscription should receive when it never overflows: plain messages in order,
    /// a key's value in the place its first waiting value took, replaced by later ones.
    fn model(pushes: &[(Option<u8>, u32)]) -> Vec<u32> {
        let mut out: Vec<(Option<u8>, u32)> = Vec::new();
        for &(key, body) in pushes {
            match out.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
                Some(waiting) => waiting.1 = body,
                None => out.push((key, body)),
            }
        }
        out.into_iter().map(|(_, b)| b).collect()
    }

    proptest! {
        /// Whatever is pushed: the queue never holds more than its capacity; a subscription that
        /// overflowed gets a resync and nothing else; every other gets exactly the model's
        /// messages, in the model's order.
        #[test]
        fn bounded_ordered_latest_or_resync(
            capacity in 1usize..8,
            pushes in proptest::collection::vec((0u64..3, proptest::option::of(0u8..3)), 0..60),
        ) {
            let now = Instant::now();
            let limits = QueueLimits { capacity, max_resyncs: usize::MAX, window: Duration::from_secs(1) };
            let mut q = SendQueue::new(limits);
            let mut resynced = BTreeSet::new();
            for (body, &(sub, key)) in pushes.iter().enumerate() {
                let key = key.map(|k| k.to_string());
                if q.push(sub, key.as_deref(), body as u32, now) == Pushed::Behind {
                    resynced.insert(sub);
                }
                prop_assert!(q.len() <= capacity);
            }
            let out = drain(&mut q);
            for sub in 0u64..3 {
                let got: Vec<u32> = out
                    .iter()
                    .filter_map(|n| match n {
                        Next::Message { sub: s, body } if *s == sub => Some(*body),
                        _ => None,
                    })
                    .collect();
                if resynced.contains(&sub) {
                    prop_assert!(out.contains(&Next::Resync(sub)));
                    prop_assert!(got.is_empty(), "sub {} got {:?} besides its resync", sub, got);
                } else {
                    let mine: Vec<(Option<u8>, u32)> = pushes
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.0 == sub)
                        .map(|(i, p)| (p.1, i as u32))
                        .collect();
                    prop_assert_eq!(got, model(&mine));
                }
            }
        }
    }
}
