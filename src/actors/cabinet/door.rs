//! Sessions at an open door: a shopper's purchase, a restock, and maintenance. They share one
//! course — weights before, `open`, the door opens, the door closes, every lane settles — and
//! differ in what the weight change means at the end.
//!
//! Purchase: `reserved → awaiting_auth → opening → open → settling → done | cancelled`. The scan
//! opens the session and writes the order in one transaction (`flows::scan`); the platform's
//! confirmation brings [`OpenForOrder`]; the door events and the after-close readings drive the
//! rest here; the settlement is one transaction (`flows::settle`).

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use super::commands::{CommandOutcome, Purpose};
use super::session::{SessionError, SessionInfo};
use super::{CabinetActor, State};
use crate::db::{DbError, orders};
use crate::device::messages::{DoorUp, OpenCmd};
use crate::device::topic::DownKind;
use crate::domain::alert;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::door::Opening;
use crate::domain::liveness::Liveness;
use crate::domain::order::ScanRefusal;
use crate::domain::restock::LaneChange;
use crate::domain::session::{Outcome, SessionKind};
use crate::domain::settlement::{self, LaneReading};
use crate::domain::weight::ReadingKind;
use crate::flows;
use crate::flows::scan::{ScanFail, ScanInput};
use crate::flows::settle::Settled;

/// An open order stays in the cache at most this long (its session ends long before).
const ORDER_CACHE_TTL_MS: u64 = 24 * 3600 * 1000;

/// Lane → grams, as orders and sessions store them.
fn before_json(before: &[(String, f64)]) -> String {
    serde_json::to_string(&before.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).unwrap_or_default()
}

/// The lane → grams of [`before_json`], or nothing when it is not that.
fn weights_of(json: &str) -> Vec<(String, f64)> {
    serde_json::from_str::<std::collections::BTreeMap<String, f64>>(json)
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// What an open door session keeps of its weights before, outside the actor (on the session row,
/// in the order cache), for an actor that takes the session up: `{"before_g": {lane: grams}}`.
#[derive(Serialize, serde::Deserialize)]
struct BeforeRecord {
    before_g: std::collections::BTreeMap<String, f64>,
}

fn before_record(before: &[(String, f64)]) -> String {
    serde_json::to_string(&BeforeRecord { before_g: before.iter().cloned().collect() }).unwrap_or_default()
}

/// The weights of a [`before_record`], or nothing when it is not one.
fn from_before_record(json: &str) -> Vec<(String, f64)> {
    serde_json::from_str::<BeforeRecord>(json).map(|r| r.before_g.into_iter().collect()).unwrap_or_default()
}

/// After a settlement the database did not take, the next try.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// What the open door is for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum DoorPurpose {
    Purchase {
        order_id: i64,
        cap_fen: i64,
    },
    /// A restocker: what they add is counted by weight into book stock.
    Restock {
        by: String,
    },
    /// A maintainer: nothing is sold or added; any weight change is recorded and flagged.
    Maintenance {
        by: String,
    },
}

impl DoorPurpose {
    pub(super) fn order_id(&self) -> Option<i64> {
        match self {
            DoorPurpose::Purchase { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The order waits for the shopper to confirm on the platform's page.
    AwaitingAuth,
    /// `open` is on its way; waiting for the door to open.
    Opening,
    Open,
    /// Closed; waiting for every lane to be stable.
    Settling,
    /// The settlement is being written.
    Finishing,
}

/// A session at one door.
pub(super) struct DoorRun {
    pub door: u32,
    pub purpose: DoorPurpose,
    pub phase: Phase,
    /// Per lane of the door, the weight before the door opened (grams).
    pub before: Vec<(String, f64)>,
    pub closed_at: Option<Instant>,
    pub cap_noticed: bool,
}

/// Why a purchase could not start.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error("{}", .0.message())]
    Refused(ScanRefusal, Option<SessionInfo>),
    #[error("{0}")]
    Session(#[from] SessionError),
}

impl From<DbError> for PurchaseError {
    fn from(e: DbError) -> Self {
        PurchaseError::Session(e.into())
    }
}

/// A shopper scanned door `door`: reserve the cabinet and write the order.
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::Order, PurchaseError>")]
pub struct StartPurchase {
    pub user_id: i64,
    pub channel: crate::pay::Channel,
    pub payer_id: String,
    pub door: u32,
}

impl Handler<StartPurchase> for CabinetActor {
    type Result = AtomicResponse<Self, Result<crate::db::models::Order, PurchaseError>>;

    fn handle(&mut self, m: StartPurchase, _ctx: &mut Context<Self>) -> Self::Result {
        let refused = match self.state {
            State::Unknown => Some(PurchaseError::Session(SessionError::NotFound)),
            State::Loading => Some(PurchaseError::Refused(ScanRefusal::CabinetNotOnline, None)),
            _ => None,
        };
        if let Some(e) = refused {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let liveness = if self.session_boot().is_some() { self.liveness } else { Liveness::Offline };
        let o = &self.svc.config.orders;
        let input = ScanInput {
            user_id: m.user_id,
            channel: m.channel,
            payer_id: m.payer_id,
            door: m.door,
            door_exists: self.lanes.iter().any(|l| l.setup.door == m.door),
            cabinet_status: self.setup.status,
            liveness,
            cabinet_busy: self.session.is_some() || self.opening,
            cap_fen: self.svc.config.payments.preauth_cap_fen,
            session: self.new_session(SessionKind::Purchase, Some(m.door), &format!("user:{}", m.user_id)),
            auth_timeout: chrono::Duration::seconds(i64::try_from(o.auth_timeout_s).unwrap_or(60)),
        };
        let held = self.session.as_ref().map(|s| s.info.clone());
        let db = self.svc.db.clone();
        AtomicResponse::new(Box::pin(async move { flows::scan::reserve(&db, input).await }.into_actor(self).map(
            move |r, act, ctx| match r {
                Ok((scanned, effects)) => {
                    act.svc.effects.run(effects);
                    let order_id = scanned.order.id;
                    act.hold_door(
                        &scanned.session,
                        SessionKind::Purchase,
                        DoorRun {
                            door: m.door,
                            purpose: DoorPurpose::Purchase { order_id, cap_fen: scanned.order.cap_fen },
                            phase: Phase::AwaitingAuth,
                            before: Vec::new(),
                            closed_at: None,
                            cap_noticed: false,
                        },
                    );
                    tracing::info!(sn = %act.sn, order = order_id, door = m.door, "purchase reserved");
                    act.watch_purchase(order_id, ctx);
                    Ok(scanned.order)
                }
                Err(ScanFail::Refused(r)) => {
                    Err(PurchaseError::Refused(r, if r == ScanRefusal::CabinetBusy { held } else { None }))
                }
                Err(ScanFail::Busy(s)) => {
                    Err(PurchaseError::Refused(ScanRefusal::CabinetBusy, Some(SessionInfo::from(s.as_ref()))))
                }
                Err(ScanFail::Db(e)) => Err(e.into()),
            },
        )))
    }
}

/// The order's pre-authorisation is confirmed (or `door.open_check` asks once more): weigh the
/// lanes and send `open`.
#[derive(Message)]
#[rtype(result = "Opening")]
pub struct OpenForOrder {
    pub order_id: i64,
    /// False: only say where the door stands (the last door-open check, about to cancel).
    pub send: bool,
}

impl<M: Message<Result = Opening>> actix::dev::MessageResponse<CabinetActor, M> for Opening {
    fn handle(self, _: &mut Context<CabinetActor>, tx: Option<actix::dev::OneshotSender<Opening>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

impl Handler<OpenForOrder> for CabinetActor {
    type Result = Opening;

    fn handle(&mut self, m: OpenForOrder, ctx: &mut Context<Self>) -> Opening {
        let Some(run) = self.door_run_for(m.order_id) else {
            tracing::warn!(sn = %self.sn, order = m.order_id, "open asked for an order this cabinet does not hold");
            return Opening::NotHeld;
        };
        let door = run.door;
        match run.phase {
            Phase::AwaitingAuth if !m.send => return Opening::Waiting,
            Phase::AwaitingAuth => {
                let before = self.weigh_door(door);
                self.cache_order(m.order_id, &before, ctx);
                if let Some(run) = self.door_run_mut() {
                    run.before = before;
                    run.phase = Phase::Opening;
                }
            }
            Phase::Opening if !m.send => return Opening::Waiting,
            Phase::Opening => {}
            Phase::Open | Phase::Settling | Phase::Finishing => {
                self.record_door_opened(m.order_id, Vec::new(), ctx);
                return Opening::DoorOpened;
            }
        }
        self.send_open(door, ctx);
        Opening::Sent
    }
}

/// The order ended without the cabinet (auth timeout, door never opened, the platform refused
/// the pre-authorisation): the database already closed the session; let go of it here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OrderEnded {
    pub order_id: i64,
}

impl Handler<OrderEnded> for CabinetActor {
    type Result = ();

    fn handle(&mut self, m: OrderEnded, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run_for(m.order_id) else { return };
        if matches!(run.phase, Phase::AwaitingAuth | Phase::Opening) {
            tracing::info!(sn = %self.sn, order = m.order_id, "purchase ended before the door opened");
            self.end_session(Outcome::Cancelled, None, ctx);
        }
    }
}

/// What an open-door session looks like to operators (`/ops/cabinets/{sn}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DoorView {
    pub door: u32,
    pub phase: &'static str,
    pub order_id: Option<i64>,
}

impl CabinetActor {
    fn hold_door(&mut self, s: &crate::db::models::Session, kind: SessionKind, run: DoorRun) {
        self.session = Some(super::session::Active {
            info: SessionInfo::from(s),
            kind,
            last_step: Instant::now(),
            calib: None,
            door: Some(run),
        });
    }

    /// Take up a purchase an earlier actor of this cabinet left open (it crashed, or Heft
    /// restarted), where the order says it stands. A door already closed is settled from the
    /// readings that come now, or sent to review when the lanes do not settle in time.
    ///
    /// The weights it started from are the order's (written when the door opened), or those
    /// cached when it was authorised (`cached`, a [`before_record`]).
    pub(super) fn resume_purchase(
        &mut self,
        s: &crate::db::models::Session,
        order: &crate::db::models::Order,
        cached: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let door = u32::try_from(order.door).unwrap_or(0);
        let before = match (&order.before_g, cached) {
            (Some(b), _) => weights_of(b),
            (None, Some(c)) => from_before_record(&c),
            (None, None) => Vec::new(),
        };
        let phase = match order.status {
            crate::domain::order::OrderStatus::Created => Phase::AwaitingAuth,
            crate::domain::order::OrderStatus::Authorized => Phase::Opening,
            crate::domain::order::OrderStatus::DoorOpen => Phase::Open,
            _ => Phase::Settling,
        };
        tracing::warn!(sn = %self.sn, order = order.id, ?phase, "resuming a purchase left by an earlier actor");
        let before = if before.is_empty() { self.weigh_door(door) } else { before };
        self.hold_door(
            s,
            SessionKind::Purchase,
            DoorRun {
                door,
                purpose: DoorPurpose::Purchase { order_id: order.id, cap_fen: order.cap_fen },
                phase,
                before,
                closed_at: None,
                cap_noticed: false,
            },
        );
        match phase {
            // The cabinet may be past its fast after-close readings: wait for slow ones.
            Phase::Settling => self.arm_settle_timer(self.unseen_close_wait(), ctx),
            Phase::AwaitingAuth | Phase::Opening => self.watch_purchase(order.id, ctx),
            Phase::Open => self.arm_open_alert(Some(order.id), ctx),
            Phase::Finishing => {}
        }
    }

    /// Take up a restock or maintenance session an earlier actor left open: as if its door were
    /// open. The cabinet, asked to log in again, reports the door; a door it does not report open
    /// closed meanwhile and is settled from the readings that follow.
    pub(super) fn resume_door_session(&mut self, s: &crate::db::models::Session, ctx: &mut Context<Self>) {
        let kind = s.kind;
        let purpose = match kind {
            SessionKind::Restock => DoorPurpose::Restock { by: s.started_by.clone() },
            _ => DoorPurpose::Maintenance { by: s.started_by.clone() },
        };
        let door = s.door.and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
        let before = s.detail.as_deref().map(from_before_record).unwrap_or_default();
        tracing::warn!(sn = %self.sn, session = s.id, kind = %s.kind, "resuming a door session left by an earlier actor");
        self.hold_door(
            s,
            kind,
            DoorRun { door, purpose, phase: Phase::Open, before, closed_at: None, cap_noticed: false },
        );
        self.arm_open_alert(None, ctx);
    }

    /// The weights the order's door started from, in the cache while the session is open
    /// (DESIGN "Cache", `heft:order:{id}`), so an actor that takes the session up knows them
    /// before the door opens.
    fn cache_order(&mut self, order_id: i64, before: &[(String, f64)], ctx: &mut Context<Self>) {
        let value = before_record(before);
        let cache = self.svc.cache.clone();
        ctx.spawn(
            async move {
                if let Err(e) = cache.order_put(order_id, &value, ORDER_CACHE_TTL_MS).await {
                    tracing::warn!(order = order_id, error = %e, "order not cached");
                }
            }
            .into_actor(self),
        );
    }

    /// The held session is ending: its order, if a purchase's, out of the cache.
    pub(super) fn forget_order(&mut self, ctx: &mut Context<Self>) {
        let held = self.session.as_ref().and_then(|s| s.door.as_ref()).and_then(|r| r.purpose.order_id());
        let Some(order_id) = held else { return };
        let cache = self.svc.cache.clone();
        ctx.spawn(
            async move {
                if let Err(e) = cache.order_forget(order_id).await {
                    tracing::warn!(order = order_id, error = %e, "order not dropped from the cache; it lapses");
                }
            }
            .into_actor(self),
        );
    }

    /// How long to wait for stable lanes after a close Heft did not see happen (it learnt of it
    /// at a login) or may have missed the fast readings of: long enough for the readings of a
    /// closed door to make a stable run.
    fn unseen_close_wait(&self) -> Duration {
        let p = &self.svc.config.protocol;
        let slow =
            Duration::from_secs(p.closed_weight_s.saturating_mul(self.svc.config.weights.stable_readings as u64));
        Duration::from_millis(self.svc.config.orders.settle_max_ms) + slow
    }

    /// A purchase whose door has not opened is normally ended by its timers (auth timeout, door
    /// check), which tell this actor. They may run on another node, or their word may be lost:
    /// after they must have fired, look at the order, and let go of the cabinet when it has ended.
    fn watch_purchase(&mut self, order_id: i64, ctx: &mut Context<Self>) {
        let o = &self.svc.config.orders;
        let after = Duration::from_secs(o.auth_timeout_s + 2 * o.open_check_s + 10);
        ctx.run_later(after, move |act, ctx| {
            let waiting = act.door_run_for(order_id).is_some_and(|r| matches!(r.phase, Phase::AwaitingAuth | Phase::Opening));
            if !waiting {
                return;
            }
            let db = act.svc.db.clone();
            ctx.spawn(async move { db.run(move |c| orders::find(c, order_id)).await }.into_actor(act).map(
                move |r, act, ctx| match r {
                    Ok(Some(o)) if o.status.is_final() => {
                        tracing::warn!(sn = %act.sn, order = order_id, status = %o.status, "purchase ended elsewhere; letting go");
                        if act.door_run_for(order_id).is_some() {
                            act.end_session(Outcome::Cancelled, None, ctx);
                        }
                    }
                    _ => act.watch_purchase(order_id, ctx),
                },
            ));
        });
    }

    fn arm_settle_timer(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        let session_id = self.session.as_ref().map(|s| s.info.id);
        ctx.run_later(wait, move |act, ctx| {
            if act.session.as_ref().map(|s| s.info.id) == session_id {
                act.try_settle(true, ctx);
            }
        });
    }

    fn door_run_mut(&mut self) -> Option<&mut DoorRun> {
        self.session.as_mut().and_then(|s| s.door.as_mut())
    }

    fn door_run_for(&self, order_id: i64) -> Option<&DoorRun> {
        self.session
            .as_ref()
            .and_then(|s| s.door.as_ref())
            .filter(|r| matches!(r.purpose, DoorPurpose::Purchase { order_id: id, .. } if id == order_id))
    }

    pub(super) fn door_view(&self) -> Option<DoorView> {
        let run = self.session.as_ref()?.door.as_ref()?;
        let order_id = run.purpose.order_id();
        let phase = match run.phase {
            Phase::AwaitingAuth => "awaiting_auth",
            Phase::Opening => "opening",
            Phase::Open => "open",
            Phase::Settling => "settling",
            Phase::Finishing => "finishing",
        };
        Some(DoorView { door: run.door, phase, order_id })
    }

    fn tolerance(&self, l: &super::weights::LaneState) -> f64 {
        l.setup.tolerance_g.unwrap_or(self.svc.config.weights.default_tolerance_g)
    }

    /// The weight on each lane of `door` as it rests now: the mean of its quiet readings, or the
    /// median of its readings when the last ones disagree (noise; the door is closed, so the
    /// lane is at rest). A lane with no reading yet gets the door-open frame's reading.
    fn weigh_door(&self, door: u32) -> Vec<(String, f64)> {
        let n = self.svc.config.weights.stable_readings;
        self.lanes
            .iter()
            .filter(|l| l.setup.door == door && l.setup.cal.is_some())
            .filter_map(|l| {
                let g = l.window.settled(n, self.tolerance(l)).or_else(|| l.window.median())?;
                Some((l.setup.code.clone(), g))
            })
            .collect()
    }

    fn send_open(&mut self, door: u32, ctx: &mut Context<Self>) {
        let Some(s) = self.session.as_ref() else { return };
        let cmd = OpenCmd { door, session_id: s.info.id, unlock_s: self.svc.config.orders.unlock_s };
        let session_id = s.info.id;
        let body = serde_json::to_value(cmd).unwrap_or_default();
        self.issue(DownKind::Open, body, Some(session_id), Purpose::Open { door }, ctx);
    }

    /// An `open` command ended. For a purchase, a cabinet that refused or did not answer is asked
    /// again by `door.open_check`, which cancels the order after the second try. A restock or
    /// maintenance session whose door cannot be unlocked, or is not opened while it is, ends
    /// cancelled: the cabinet must not stay held by a door nobody opened.
    pub(super) fn open_done(
        &mut self,
        door: u32,
        session_id: Option<i64>,
        outcome: CommandOutcome,
        ctx: &mut Context<Self>,
    ) {
        let acked = matches!(outcome, CommandOutcome::Acked(_));
        if !acked {
            tracing::warn!(sn = %self.sn, door, outcome = %outcome.status(), "open not carried out");
        }
        let ours = session_id.is_some() && self.session.as_ref().map(|s| s.info.id) == session_id;
        let waiting = self
            .session
            .as_ref()
            .and_then(|s| s.door.as_ref())
            .is_some_and(|r| r.phase == Phase::Opening && r.purpose.order_id().is_none());
        if !(ours && waiting) {
            return;
        }
        if !acked {
            let detail = serde_json::json!({ "reason": "open_failed", "outcome": outcome.status() }).to_string();
            return self.end_session(Outcome::Cancelled, Some(detail), ctx);
        }
        // Unlocked for `unlock_s`; a door opened late is still reported within a command timeout.
        let o = &self.svc.config;
        let wait = Duration::from_secs(o.orders.unlock_s) + Duration::from_millis(o.protocol.command_timeout_ms);
        ctx.run_later(wait, move |act, ctx| {
            let still = act.session.as_ref().filter(|s| Some(s.info.id) == session_id).and_then(|s| s.door.as_ref());
            if still.is_some_and(|r| r.phase == Phase::Opening) {
                tracing::warn!(sn = %act.sn, door, "door session: the door was not opened while unlocked");
                let detail = serde_json::json!({ "reason": "door_not_opened" }).to_string();
                act.end_session(Outcome::Cancelled, Some(detail), ctx);
            }
        });
    }

    /// A door event, after the door bookkeeping in `weights`.
    pub(super) fn door_event(&mut self, d: &DoorUp, ctx: &mut Context<Self>) {
        let held = self.door_run_mut().filter(|run| run.door == d.door);
        let Some(run) = held else {
            // An installer stocking a cabinet that is not in service yet is no alarm.
            let installing = self.setup.status == CabinetStatus::Initializing;
            if d.open && !installing && !self.session.as_ref().is_some_and(|s| s.kind == SessionKind::Calibration) {
                self.door_open_unheld(d.door, ctx);
            }
            return;
        };
        match (d.open, run.phase) {
            (true, Phase::Opening) => self.door_opened(d.door, d.counts.as_deref(), ctx),
            (false, Phase::Opening) => {
                // Reported closed while Heft still waits for it to open: it opened and closed
                // while its frames could not reach Heft (a dropped connection, a lost frame).
                // The weights before were taken at the authorisation; settle from them.
                tracing::warn!(sn = %self.sn, door = d.door, "door reported closed before its open was seen; settling");
                self.door_closed(Duration::from_millis(self.svc.config.orders.settle_max_ms), true, ctx);
            }
            (true, Phase::AwaitingAuth) => {
                tracing::error!(sn = %self.sn, door = d.door, "door opened before the purchase was authorised");
                self.raise(alert::door_opened_unauthorised(self.sn.as_str(), d.door), ctx);
            }
            (false, Phase::Open) => {
                self.door_closed(Duration::from_millis(self.svc.config.orders.settle_max_ms), false, ctx)
            }
            _ => {}
        }
    }

    /// A door opened that no session holds: goods are unguarded. Critical, for a person to see.
    fn door_open_unheld(&mut self, door: u32, ctx: &mut Context<Self>) {
        tracing::error!(sn = %self.sn, door, "door open with no session holding it");
        self.raise(alert::door_open_unheld(self.sn.as_str(), door), ctx);
    }

    /// After a login the cabinet reports every door that is open before its first heartbeat or
    /// weight (device protocol §8). A session's door it did not report open has closed while
    /// Heft could not hear it: settle it from the readings that come now. They come at the
    /// closed-door cadence (the cabinet saw no close to report), so the wait is longer.
    pub(super) fn doors_reported(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.session.as_ref().and_then(|s| s.door.as_ref()) else { return };
        if run.phase != Phase::Open || self.doors.open.contains(&run.door) {
            return;
        }
        tracing::warn!(sn = %self.sn, door = run.door, "door not reported open after the login: it closed unseen; settling");
        // Readings from before the close must not count towards its stability.
        for l in &mut self.lanes {
            l.window.clear();
        }
        self.door_closed(self.unseen_close_wait(), false, ctx);
    }

    fn door_opened(&mut self, door: u32, counts: Option<&[i64]>, ctx: &mut Context<Self>) {
        // The reading sent with the event: it fills lanes with no weight yet, and a lane that
        // disagrees with its resting weight is noted on the order (someone may have been at it).
        let snapshot: Vec<(String, f64)> = match counts {
            Some(counts) => self
                .lanes
                .iter()
                .filter(|l| l.setup.door == door)
                .filter_map(|l| Some((l.setup.code.clone(), l.setup.cal?.grams(*counts.get(l.setup.channel)?))))
                .collect(),
            None => Vec::new(),
        };
        let tolerances: Vec<(String, f64)> =
            self.lanes.iter().map(|l| (l.setup.code.clone(), self.tolerance(l) * 3.0)).collect();
        let Some(run) = self.door_run_mut() else { return };
        run.phase = Phase::Open;
        let mut disagree = Vec::new();
        for (lane, g) in &snapshot {
            match run.before.iter().find(|(l, _)| l == lane) {
                None => run.before.push((lane.clone(), *g)),
                Some((_, b)) => {
                    let tol = tolerances.iter().find(|(l, _)| l == lane).map_or(15.0, |t| t.1);
                    if (b - g).abs() > tol {
                        disagree.push(lane.clone());
                    }
                }
            }
        }
        let order = run.purpose.order_id();
        if let Some(order_id) = order {
            self.record_door_opened(order_id, disagree, ctx);
        }
        self.arm_open_alert(order, ctx);
    }

    /// A door still open after `orders.door_open_alert_s` raises an alert (and a notice on the
    /// order).
    fn arm_open_alert(&mut self, order: Option<i64>, ctx: &mut Context<Self>) {
        let alert_after = Duration::from_secs(self.svc.config.orders.door_open_alert_s);
        let session_id = self.session.as_ref().map(|s| s.info.id);
        ctx.run_later(alert_after, move |act, ctx| {
            let still_open = act.session.as_ref().map(|s| s.info.id) == session_id
                && act.session.as_ref().and_then(|s| s.door.as_ref()).is_some_and(|r| r.phase == Phase::Open);
            if still_open {
                act.door_open_too_long(order, ctx);
            }
        });
    }

    /// The order is `door_open`, with the weights it started from (and a notice naming the lanes
    /// that weighed differently at the open than at rest). Idempotent: written again when in doubt.
    fn record_door_opened(&mut self, order_id: i64, differ: Vec<String>, ctx: &mut Context<Self>) {
        let Some(run) = self.session.as_ref().and_then(|s| s.door.as_ref()) else { return };
        let before = before_json(&run.before);
        let (db, sn) = (self.svc.db.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                if let Err(e) = flows::door::opened(&db, order_id, before, differ).await {
                    tracing::error!(%sn, order = order_id, error = %e, "door open not recorded");
                }
            }
            .into_actor(self),
        );
    }

    fn door_open_too_long(&mut self, order_id: Option<i64>, ctx: &mut Context<Self>) {
        let limit = self.svc.config.orders.door_open_alert_s;
        tracing::warn!(sn = %self.sn, order = ?order_id, "door open too long");
        self.raise(alert::door_open_too_long(self.sn.as_str(), order_id, limit), ctx);
        let Some(order_id) = order_id else { return };
        let (db, sn) = (self.svc.db.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                if let Err(e) = flows::door::open_too_long(&db, order_id).await {
                    tracing::error!(%sn, order = order_id, error = %e, "door-open notice not stored");
                }
            }
            .into_actor(self),
        );
    }

    /// The door closed: settle once its lanes are stable, within `wait`. `unseen_open`: its open
    /// was never heard, and is recorded first, with the weights taken at the authorisation.
    fn door_closed(&mut self, wait: Duration, unseen_open: bool, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run_mut() else { return };
        let opened_before = unseen_open.then(|| before_json(&run.before));
        run.phase = Phase::Settling;
        run.closed_at = Some(Instant::now());
        if let Some(order_id) = run.purpose.order_id() {
            let (db, sn) = (self.svc.db.clone(), self.sn.to_string());
            ctx.spawn(
                async move {
                    if let Err(e) = flows::door::closed(&db, order_id, opened_before).await {
                        tracing::error!(%sn, order = order_id, error = %e, "door close not recorded");
                    }
                }
                .into_actor(self),
            );
        }
        self.arm_settle_timer(wait, ctx);
    }

    /// A weight reading, after it entered the lanes' windows.
    pub(super) fn door_reading(&mut self, kind: ReadingKind, ctx: &mut Context<Self>) {
        let Some(run) = self.session.as_ref().and_then(|s| s.door.as_ref()) else { return };
        match (run.phase, kind) {
            (Phase::Settling, ReadingKind::AfterClose | ReadingKind::Closed) => self.try_settle(false, ctx),
            (Phase::Open, _) => self.watch_basket(ctx),
            _ => {}
        }
    }

    /// While the door is open: the basket's estimated value against the pre-authorisation's cap.
    fn watch_basket(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.session.as_ref().and_then(|s| s.door.as_ref()) else { return };
        let DoorPurpose::Purchase { order_id, cap_fen } = run.purpose else { return };
        if run.cap_noticed {
            return;
        }
        let readings = self.lane_readings(run, |l| l.window.latest());
        let current: Vec<Option<f64>> = readings.iter().map(|r| r.after_g).collect();
        let estimate = settlement::estimate_basket_fen(&readings, &current);
        let Some(excess) = settlement::over_cap(estimate, cap_fen) else { return };
        if let Some(run) = self.door_run_mut() {
            run.cap_noticed = true;
        }
        tracing::warn!(sn = %self.sn, order = order_id, estimate, cap_fen, "basket over the pre-authorisation cap");
        let (db, sn) = (self.svc.db.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                if let Err(e) = flows::door::over_cap(&db, order_id, excess).await {
                    tracing::error!(%sn, order = order_id, error = %e, "over-cap notice not stored");
                }
            }
            .into_actor(self),
        );
    }

    /// The lanes of the run's door that hold a product, with `after` read by `after`.
    fn lane_readings(
        &self,
        run: &DoorRun,
        after: impl Fn(&super::weights::LaneState) -> Option<f64>,
    ) -> Vec<LaneReading> {
        self.lanes
            .iter()
            .filter(|l| l.setup.door == run.door)
            .filter_map(|l| {
                let before = run.before.iter().find(|(code, _)| *code == l.setup.code).map(|b| b.1);
                Some(LaneReading {
                    lane: l.setup.code.clone(),
                    product_id: l.setup.product_id?,
                    product_name: l.setup.product_name.clone().unwrap_or_default(),
                    unit_g: l.setup.unit_g?,
                    tolerance_g: self.tolerance(l),
                    price_fen: l.setup.price_fen?,
                    before_g: before,
                    after_g: after(l),
                })
            })
            .collect()
    }

    /// Settle once every lane of the door is stable; with `force` (the wait ran out), settle with
    /// what there is, lanes that never settled sending the order to review.
    fn try_settle(&mut self, force: bool, ctx: &mut Context<Self>) {
        let n = self.svc.config.weights.stable_readings;
        let Some(run) = self.session.as_ref().and_then(|s| s.door.as_ref()) else { return };
        if run.phase != Phase::Settling {
            return;
        }
        let readings = self.lane_readings(run, |l| l.window.stable(n, self.tolerance(l)));
        if !force && readings.iter().any(|r| r.after_g.is_none()) {
            return;
        }
        let order_id = match &run.purpose {
            DoorPurpose::Purchase { order_id, .. } => *order_id,
            DoorPurpose::Restock { by } => return self.finish_restock(readings, by.clone(), ctx),
            DoorPurpose::Maintenance { by } => {
                let changes = self.lane_changes(run, n);
                return self.finish_maintenance(changes, by.clone(), ctx);
            }
        };
        let waited = run.closed_at.map(|t| t.elapsed());
        if let Some(run) = self.door_run_mut() {
            run.phase = Phase::Finishing;
        }
        if let Some(w) = waited {
            self.svc.metrics.settle_seconds.observe(w.as_secs_f64());
        }
        let (db, sn, scale_error) = (self.svc.db.clone(), self.sn.to_string(), self.svc.config.weights.scale_error);
        // `wait`: nothing else of this cabinet is handled before the settlement is stored and the
        // session let go, so the next scan finds the cabinet free and the stock right.
        ctx.wait(async move { flows::settle::settle(&db, &sn, order_id, readings, scale_error).await }.into_actor(self).map(
            move |r, act, ctx| {
                match r {
                    Ok((Settled::Now(o), effects)) => {
                        tracing::info!(sn = %act.sn, order = order_id, status = %o.status, "purchase settled");
                        act.svc.effects.run(effects);
                    }
                    Ok((Settled::Already(o), _)) => {
                        tracing::info!(sn = %act.sn, order = order_id, status = %o.status, "purchase was already settled");
                    }
                    // Raised for a person, and the session ended failed, by the flow.
                    Ok((Settled::Refused(..), _)) => {}
                    Err(e) => {
                        tracing::error!(sn = %act.sn, order = order_id, error = %e, "settlement not stored; retrying");
                        act.settle_again(ctx);
                        return;
                    }
                }
                act.let_go(ctx);
            },
        ));
    }

    /// Book stock changed in the database: read it again for the ops view.
    fn reload_stock(&mut self, ctx: &mut Context<Self>) {
        let (svc, sn) = (self.svc.clone(), self.sn.to_string());
        ctx.spawn(async move { super::load_setup(&svc, &sn).await }.into_actor(self).map(|r, act, _| {
            if let Ok(setup) = r {
                act.apply_setup(setup);
            }
        }));
    }
}

/// An operator's session at a door: a restock or maintenance. The door is unlocked at once.
#[derive(Message)]
#[rtype(result = "Result<DoorSessionStarted, SessionError>")]
pub struct StartDoorSession {
    pub kind: SessionKind,
    pub door: u32,
    pub by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoorSessionStarted {
    pub session: SessionInfo,
    /// The restock task the session works on, if the cabinet had one.
    pub task_id: Option<i64>,
}

impl Handler<StartDoorSession> for CabinetActor {
    type Result = AtomicResponse<Self, Result<DoorSessionStarted, SessionError>>;

    fn handle(&mut self, m: StartDoorSession, _ctx: &mut Context<Self>) -> Self::Result {
        let refusal = match self.state {
            State::Unknown => Some(SessionError::NotFound),
            State::Loading => Some(SessionError::Internal("cabinet state is loading".into())),
            _ if self.session.is_some() => self.busy().err(),
            _ if self.opening => Some(SessionError::Opening),
            _ if self.session_boot().is_none() || self.liveness == Liveness::Offline => {
                Some(SessionError::NotConnected)
            }
            _ if !self.lanes.iter().any(|l| l.setup.door == m.door) => {
                Some(SessionError::NotConfigured(format!("door {} has no lanes", m.door)))
            }
            _ => None,
        };
        if let Some(e) = refusal {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        // The weights before, kept on the session too: an actor that takes the session up after
        // a crash counts from them.
        let before = self.weigh_door(m.door);
        let mut new = self.new_session(m.kind, Some(m.door), &m.by);
        new.detail = Some(before_record(&before));
        let db = self.svc.db.clone();
        AtomicResponse::new(Box::pin(
            async move { flows::restock::open_session(&db, new).await }
            .into_actor(self)
            .map(move |r, act, ctx| match r? {
                Err(held) => Err(SessionError::Busy(SessionInfo::from(&held))),
                Ok((s, task_id)) => {
                    let purpose = match m.kind {
                        SessionKind::Restock => DoorPurpose::Restock { by: m.by.clone() },
                        _ => DoorPurpose::Maintenance { by: m.by.clone() },
                    };
                    act.hold_door(
                        &s,
                        m.kind,
                        DoorRun { door: m.door, purpose, phase: Phase::Opening, before, closed_at: None, cap_noticed: false },
                    );
                    act.send_open(m.door, ctx);
                    tracing::info!(sn = %act.sn, kind = m.kind.as_str(), door = m.door, by = %m.by, "door session started");
                    Ok(DoorSessionStarted { session: SessionInfo::from(&s), task_id })
                }
            }),
        ))
    }
}

impl CabinetActor {
    /// A restock door settled: each lane's change counted in whole units goes into book stock
    /// (`flows::restock::finish`).
    fn finish_restock(&mut self, readings: Vec<LaneReading>, by: String, ctx: &mut Context<Self>) {
        let Some(session_id) = self.session.as_ref().map(|s| s.info.id) else { return };
        let (db, sn, scale_error) = (self.svc.db.clone(), self.sn.to_string(), self.svc.config.weights.scale_error);
        let runner = self.svc.effects.clone();
        self.finish_door(ctx, async move {
            let effects = flows::restock::finish(&db, sn, session_id, readings, by, scale_error).await?;
            runner.run(effects);
            Ok(())
        });
    }

    /// Every calibrated lane of the run's door, product or not: its weight before, after (stable),
    /// and the tolerance a change is judged by.
    fn lane_changes(&self, run: &DoorRun, n: usize) -> Vec<LaneChange> {
        self.lanes
            .iter()
            .filter(|l| l.setup.door == run.door && l.setup.cal.is_some())
            .map(|l| LaneChange {
                lane: l.setup.code.clone(),
                before_g: run.before.iter().find(|(code, _)| *code == l.setup.code).map(|b| b.1),
                after_g: l.window.stable(n, self.tolerance(l)),
                tolerance_g: self.tolerance(l),
            })
            .collect()
    }

    /// A maintenance door settled: nothing changes hands; any lane that moved (or cannot be
    /// compared) is recorded on the session and flagged (`flows::restock::finish_maintenance`).
    fn finish_maintenance(&mut self, changes: Vec<LaneChange>, by: String, ctx: &mut Context<Self>) {
        let Some(session_id) = self.session.as_ref().map(|s| s.info.id) else { return };
        let (db, sn) = (self.svc.db.clone(), self.sn.to_string());
        self.finish_door(
            ctx,
            async move { flows::restock::finish_maintenance(&db, sn, session_id, changes, by).await },
        );
    }

    /// Store how a door session ended, then let go of the cabinet.
    fn finish_door(&mut self, ctx: &mut Context<Self>, write: impl Future<Output = Result<(), DbError>> + 'static) {
        if let Some(run) = self.door_run_mut() {
            run.phase = Phase::Finishing;
        }
        ctx.wait(write.into_actor(self).map(|r, act, ctx| {
            if let Err(e) = r {
                tracing::error!(sn = %act.sn, error = %e, "door session end not stored; retrying");
                act.settle_again(ctx);
                return;
            }
            act.let_go(ctx);
        }));
    }

    /// Nothing of the end was written: keep the session and settle again shortly (the database
    /// may be back); the lanes' readings are still in their windows.
    fn settle_again(&mut self, ctx: &mut Context<Self>) {
        if let Some(run) = self.door_run_mut() {
            run.phase = Phase::Settling;
        }
        ctx.run_later(SETTLE_RETRY, |act, ctx| act.try_settle(true, ctx));
    }

    /// The door session's end is stored: free the cabinet, judge drift afresh, read the new book
    /// stock, and deliver whatever waited for the cabinet.
    fn let_go(&mut self, ctx: &mut Context<Self>) {
        self.forget_order(ctx);
        self.session = None;
        self.reset_baselines();
        self.reload_stock(ctx);
        self.deliver_pending(ctx);
    }
}
