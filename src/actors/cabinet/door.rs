//! Sessions at an open door: a shopper's purchase, a restock, and maintenance. Their course —
//! weights before, `open`, the door opens, the door closes, every lane settles — is the pure state
//! machine `domain::door::Course`: this file feeds it what happens ([`Event`]s from the cabinet,
//! the order's timers and flows) and carries out its [`Effect`]s (weighing, commands, records,
//! timers, the settlement through `flows::settle` or `flows::restock`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use super::CabinetActor;
use super::State;
use super::held::{CommandOutcome, DoorRun, Held, Purpose, SessionError, SessionInfo};
use super::lanes::LaneState;
use crate::db::DbError;
use crate::db::models::{Order, Session};
use crate::device::messages::{DoorUp, OpenCmd, WeighCmd};
use crate::device::topic::DownKind;
use crate::domain::alert;
use crate::domain::baseline::Baseline;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::door::{self as course, Course, EndReason, Event, Opening, Phase, Wait};
use crate::domain::live::Change;
use crate::domain::liveness::Liveness;
use crate::domain::order::{OrderStatus, ScanRefusal};
use crate::domain::restock::LaneChange;
use crate::domain::session::SessionKind;
use crate::domain::settlement::{self, LaneReading};
use crate::domain::units::Fen;
use crate::domain::units::Grams;
use crate::domain::weight::ReadingKind;
use crate::flows;
use crate::flows::scan::{ScanFail, ScanInput};
use crate::flows::settle::Settled;

/// An open order stays in the cache at most this long (its session ends long before).
const ORDER_CACHE_TTL_MS: u64 = 24 * 3600 * 1000;

/// After a settlement the database did not take, the next try.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// Lane → grams, as orders store them.
fn before_json(before: &[(String, Grams)]) -> String {
    serde_json::to_string(&before.iter().cloned().collect::<BTreeMap<_, _>>()).unwrap_or_default()
}

/// The lane → grams of [`before_json`], or nothing when it is not that.
fn weights_of(json: &str) -> Vec<(String, Grams)> {
    serde_json::from_str::<BTreeMap<String, Grams>>(json).map(|m| m.into_iter().collect()).unwrap_or_default()
}

/// What an open door session keeps of its weights before, outside the actor (on the session row,
/// in the order cache), for an actor that takes the session up: `{"before_g": {lane: grams}}`.
#[derive(Serialize, serde::Deserialize)]
struct BeforeRecord {
    before_g: BTreeMap<String, Grams>,
}

fn before_record(before: &[(String, Grams)]) -> String {
    serde_json::to_string(&BeforeRecord { before_g: before.iter().cloned().collect() }).unwrap_or_default()
}

/// The weights of a [`before_record`], or nothing when it is not one.
fn from_before_record(json: &str) -> Vec<(String, Grams)> {
    serde_json::from_str::<BeforeRecord>(json).map(|r| r.before_g.into_iter().collect()).unwrap_or_default()
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

/// A shopper scanned door `door`: reserve the cabinet and write the order (`flows::scan`).
#[derive(Message)]
#[rtype(result = "Result<Order, PurchaseError>")]
pub struct StartPurchase {
    pub user_id: i64,
    pub channel: crate::pay::Channel,
    pub payer_id: String,
    pub door: u32,
}

impl Handler<StartPurchase> for CabinetActor {
    type Result = AtomicResponse<Self, Result<Order, PurchaseError>>;

    fn handle(&mut self, m: StartPurchase, _ctx: &mut Context<Self>) -> Self::Result {
        let refused = match self.state {
            State::Unknown => Some(PurchaseError::Session(SessionError::NotFound)),
            State::Loading => Some(PurchaseError::Refused(ScanRefusal::CabinetNotOnline, None)),
            _ => None,
        };
        if let Some(e) = refused {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let input = self.scan_input(&m);
        let held = self.held.as_ref().map(|h| h.info().clone());
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(async move { flows::scan::reserve(&db, input).await }.into_actor(self).map(
            move |r, act, ctx| match r {
                Ok((scanned, effects)) => {
                    act.svc.effects.run(effects);
                    let order = scanned.order;
                    let (course, start) = Course::purchase(m.door, order.id, order.cap_fen);
                    act.hold_door(&scanned.session, course, Vec::new());
                    act.hurry_weights(scanned.session.id, m.door, ctx);
                    tracing::info!(sn = %act.sn, order = order.id, door = m.door, "purchase reserved");
                    act.carry_out(start, None, ctx);
                    Ok(order)
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
        let Some(session_id) = self.session_of_order(m.order_id) else {
            tracing::warn!(sn = %self.sn, order = m.order_id, "open asked for an order this cabinet does not hold");
            return Opening::NotHeld;
        };
        self.drive(session_id, Event::OpenAsked { send: m.send }, ctx).unwrap_or(Opening::NotHeld)
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
        if let Some(session_id) = self.session_of_order(m.order_id) {
            self.drive(session_id, Event::OrderEnded, ctx);
        }
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DoorSessionStarted {
    pub session: SessionInfo,
    /// The restock task the session works on, if the cabinet had one.
    pub task_id: Option<i64>,
}

impl Handler<StartDoorSession> for CabinetActor {
    type Result = AtomicResponse<Self, Result<DoorSessionStarted, SessionError>>;

    fn handle(&mut self, m: StartDoorSession, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.refuse_door_session(m.door) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        // The weights before, kept on the session too: an actor that takes the session up after
        // a crash counts from them.
        let before = self.weigh_door(m.door);
        let mut new = self.new_session(m.kind, Some(m.door), &m.by);
        new.detail = Some(before_record(&before));
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(async move { flows::restock::open_session(&db, new).await }.into_actor(self).map(
            move |r, act, ctx| match r? {
                Err(held) => Err(SessionError::Busy(SessionInfo::from(&held))),
                Ok((s, task_id)) => {
                    let (course, start) = Course::door_session(m.door, door_purpose(m.kind, m.by.clone()));
                    act.hold_door(&s, course, before);
                    act.carry_out(start, None, ctx);
                    tracing::info!(sn = %act.sn, kind = m.kind.as_str(), door = m.door, by = %m.by, "door session started");
                    Ok(DoorSessionStarted { session: SessionInfo::from(&s), task_id })
                }
            },
        )))
    }
}

fn door_purpose(kind: SessionKind, by: String) -> course::Purpose {
    match kind {
        SessionKind::Restock => course::Purpose::Restock { by },
        _ => course::Purpose::Maintenance { by },
    }
}

impl CabinetActor {
    /// What the scan's transaction needs from this actor (`flows::scan`).
    fn scan_input(&self, m: &StartPurchase) -> ScanInput {
        let o = &self.svc.config.orders;
        ScanInput {
            user_id: m.user_id,
            channel: m.channel,
            payer_id: m.payer_id.clone(),
            door: m.door,
            door_exists: self.lanes.iter().any(|l| l.setup.door == m.door),
            cabinet_status: self.setup.status,
            liveness: if self.session_boot().is_some() { self.liveness } else { Liveness::Offline },
            cabinet_busy: self.held.is_some() || self.opening,
            cap_fen: self.svc.config.payments.preauth_cap_fen,
            session: self.new_session(SessionKind::Purchase, Some(m.door), &format!("user:{}", m.user_id)),
            auth_timeout: chrono::Duration::seconds(i64::try_from(o.auth_timeout_s).unwrap_or(60)),
            confirm_checks: o
                .confirm_checks_s
                .iter()
                .filter(|s| **s < o.auth_timeout_s)
                .map(|s| chrono::Duration::seconds(i64::try_from(*s).unwrap_or(i64::MAX / 1000)))
                .collect(),
        }
    }

    /// Why a restock or maintenance session cannot start now.
    fn refuse_door_session(&self, door: u32) -> Option<SessionError> {
        match self.state {
            State::Unknown => Some(SessionError::NotFound),
            State::Loading => Some(SessionError::Loading),
            _ if self.held.is_some() => self.busy().err(),
            _ if self.opening => Some(SessionError::Opening),
            _ if self.session_boot().is_none() || self.liveness == Liveness::Offline => {
                Some(SessionError::NotConnected)
            }
            _ if !self.lanes.iter().any(|l| l.setup.door == door) => {
                Some(SessionError::NotConfigured(format!("door {door} has no lanes")))
            }
            _ => None,
        }
    }

    fn hold_door(&mut self, s: &Session, course: Course, before: Vec<(String, Grams)>) {
        let before_sem = self.before_sem(course.door);
        let run = DoorRun { course, before, before_sem, closed_at: None };
        self.held = Some(Held::Door(SessionInfo::from(s), run));
        self.changed();
    }

    fn door_run(&self) -> Option<&DoorRun> {
        self.held.as_ref().and_then(Held::door)
    }

    /// The session holding the cabinet for this order, if any.
    fn session_of_order(&self, order_id: i64) -> Option<i64> {
        match &self.held {
            Some(Held::Door(info, run)) if run.course.purpose.order_id() == Some(order_id) => Some(info.id),
            _ => None,
        }
    }

    /// Feed `event` to the course of session `session_id` (if it still holds the cabinet) and
    /// carry out what it says; the answer to a door-open check, when there is one.
    fn drive(&mut self, session_id: i64, event: Event, ctx: &mut Context<Self>) -> Option<Opening> {
        self.drive_with(session_id, event, None, ctx)
    }

    /// [`Self::drive`], with the counts the cabinet sent with a door event.
    fn drive_with(
        &mut self,
        session_id: i64,
        event: Event,
        counts: Option<&[i64]>,
        ctx: &mut Context<Self>,
    ) -> Option<Opening> {
        let Some(Held::Door(info, run)) = self.held.as_mut() else { return None };
        if info.id != session_id {
            return None;
        }
        let was = run.course.phase;
        let effects = run.course.step(event);
        if run.course.phase == Phase::Settling && matches!(was, Phase::Opening | Phase::Open) {
            run.closed_at = Some(Instant::now());
        }
        self.carry_out(effects, counts, ctx)
    }

    /// Carry out a course's effects, in order.
    fn carry_out(
        &mut self,
        effects: Vec<course::Effect>,
        counts: Option<&[i64]>,
        ctx: &mut Context<Self>,
    ) -> Option<Opening> {
        let mut answer = None;
        for effect in effects {
            if let course::Effect::Answer(a) = effect {
                answer = Some(a);
            } else {
                self.carry_out_one(effect, counts, ctx);
            }
        }
        answer
    }

    fn carry_out_one(&mut self, effect: course::Effect, counts: Option<&[i64]>, ctx: &mut Context<Self>) {
        use course::Effect as E;
        let Some(Held::Door(info, run)) = self.held.as_ref() else { return };
        let (session_id, door, order_id) = (info.id, run.course.door, run.course.purpose.order_id());
        match effect {
            E::Answer(_) => {}
            E::WeighBefore => self.weigh_before(ctx),
            E::SendOpen => self.send_open(session_id, door, ctx),
            E::WatchOrder => self.watch_order(session_id, ctx),
            E::RecordOpened => self.door_opened(counts, ctx),
            E::RecordOpenedAgain => self.record_door_opened(Vec::new(), ctx),
            E::RecordClosed { unseen_open } => self.record_door_closed(unseen_open, ctx),
            E::ForgetReadings => self.lanes.iter_mut().for_each(|l| l.window.clear()),
            E::AwaitStable(wait) => self.after(self.stable_wait(wait), session_id, Event::SettleDue, ctx),
            E::ArmOpenAlert => {
                let limit = Duration::from_secs(self.svc.config.orders.door_open_alert_s);
                self.after(limit, session_id, Event::OpenTooLong, ctx);
            }
            E::AwaitOpenWhileUnlocked => {
                // Unlocked for `unlock_s`; a door opened late is still reported within a command
                // timeout.
                let o = &self.svc.config;
                let wait =
                    Duration::from_secs(o.orders.unlock_s) + Duration::from_millis(o.protocol.command_timeout_ms);
                self.after(wait, session_id, Event::UnlockLapsed, ctx);
            }
            E::WatchBasket => self.watch_basket(session_id, ctx),
            E::NoticeOverCap { excess_fen } => self.notice_over_cap(order_id, excess_fen, ctx),
            E::AlertOpenTooLong => self.door_open_too_long(order_id, ctx),
            E::AlertOpenedUnauthorised => {
                tracing::error!(sn = %self.sn, door, "door opened before the purchase was authorised");
                self.raise(alert::door_opened_unauthorised(self.sn.as_str(), door), ctx);
            }
            E::Finish => self.finish(session_id, ctx),
            E::FinishAgain => self.after(SETTLE_RETRY, session_id, Event::SettleDue, ctx),
            E::LetGo => self.let_go(ctx),
            E::End(outcome, reason) => {
                tracing::info!(sn = %self.sn, order = ?order_id, reason = reason.as_str(), "door session ended unsettled");
                let detail = match reason {
                    EndReason::OrderEnded => None,
                    _ => Some(serde_json::json!({ "reason": reason.as_str() }).to_string()),
                };
                self.end_session(outcome, detail, ctx);
            }
        }
    }

    /// Feed `event` to session `session_id`'s course after `wait`, if the session still holds the
    /// cabinet then.
    fn after(&mut self, wait: Duration, session_id: i64, event: Event, ctx: &mut Context<Self>) {
        ctx.run_later(wait, move |act, ctx| {
            act.drive(session_id, event, ctx);
        });
    }

    /// How long to wait for stable lanes.
    fn stable_wait(&self, wait: Wait) -> Duration {
        let settle_max = Duration::from_millis(self.svc.config.orders.settle_max_ms);
        match wait {
            Wait::AfterClose => settle_max,
            // A close Heft did not see happen (it learnt of it at a login) or may have missed the
            // fast readings of: long enough for the readings of a closed door to make a stable run.
            Wait::Unseen => {
                let p = &self.svc.config.protocol;
                settle_max
                    + Duration::from_secs(
                        p.closed_weight_s.saturating_mul(self.svc.config.weights.stable_readings as u64),
                    )
            }
        }
    }

    /// Take up a purchase an earlier actor of this cabinet left open (it crashed, or Heft
    /// restarted), where the order says it stands. The weights it started from are the order's
    /// (written when the door opened), or those cached when it was authorised (`cached`, a
    /// [`before_record`]).
    pub(super) fn resume_purchase(
        &mut self,
        s: &Session,
        order: &Order,
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
            OrderStatus::Created => Phase::AwaitingAuth,
            OrderStatus::Authorized => Phase::Opening,
            OrderStatus::DoorOpen => Phase::Open,
            _ => Phase::Settling,
        };
        tracing::warn!(sn = %self.sn, order = order.id, ?phase, "resuming a purchase left by an earlier actor");
        let before = if before.is_empty() { self.weigh_door(door) } else { before };
        let purpose = course::Purpose::Purchase { order_id: order.id, cap_fen: order.cap_fen };
        let (course, start) = Course::resume(door, purpose, phase);
        self.hold_door(s, course, before);
        self.carry_out(start, None, ctx);
    }

    /// The cabinet logged in while a door session waits for closed-door readings (taken up after
    /// a crash, or back after the cabinet was away): ask for them now (`weigh`), so the session
    /// settles within `settle_max_ms` rather than at the closed cadence.
    pub(super) fn weigh_if_settling(&mut self, ctx: &mut Context<Self>) {
        let Some(Held::Door(info, run)) = &self.held else { return };
        if !matches!(run.course.phase, Phase::Open | Phase::Settling) {
            return;
        }
        let session = info.id;
        tracing::info!(sn = %self.sn, session, "asking for weights now to finish a session taken up");
        self.issue(DownKind::Weigh, &WeighCmd::default(), Some(session), Purpose::Weigh, ctx);
    }

    /// A shopper is authorising a purchase at `door` and some lane of it is not known as
    /// precisely as its counts need, by a rest or its baseline (the closed-door readings are
    /// sparse, or it has just been restocked): ask for readings now (`weigh`), so that by the
    /// time the door opens its weight before is known from many (see [`Self::door_opened`]).
    fn hurry_weights(&mut self, session_id: i64, door: u32, ctx: &mut Context<Self>) {
        let known =
            |l: &LaneState| self.rest_of(l).is_ok() || l.baseline.is_some_and(|b| b.sem_g.0 <= self.need_sem(l));
        let imprecise = self.lanes.iter().filter(|l| l.setup.door == door && l.setup.cal.is_some()).any(|l| !known(l));
        if imprecise {
            self.issue(DownKind::Weigh, &WeighCmd::default(), Some(session_id), Purpose::Weigh, ctx);
        }
    }

    /// Take up a restock or maintenance session an earlier actor left open: as if its door were
    /// open. The cabinet, asked to log in again, reports the door; a door it does not report open
    /// closed meanwhile and is settled from the readings that follow.
    pub(super) fn resume_door_session(&mut self, s: &Session, ctx: &mut Context<Self>) {
        let door = s.door.and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
        let before = s.detail.as_deref().map(from_before_record).unwrap_or_default();
        tracing::warn!(sn = %self.sn, session = s.id, kind = %s.kind, "resuming a door session left by an earlier actor");
        let (course, start) = Course::resume(door, door_purpose(s.kind, s.started_by.clone()), Phase::Open);
        self.hold_door(s, course, before);
        self.carry_out(start, None, ctx);
    }

    /// The order is authorised: the weights its door starts from, also in the cache while the
    /// session is open (`heft:order:{id}`), so an actor that takes the session up knows them
    /// before the door opens.
    fn weigh_before(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run() else { return };
        let before = self.weigh_door(run.course.door);
        if let Some(order_id) = run.course.purpose.order_id() {
            let (value, cache, sn) = (before_record(&before), self.svc.cache.clone(), self.sn.to_string());
            ctx.spawn(
                async move {
                    if let Err(e) = cache.order_put(order_id, &value, ORDER_CACHE_TTL_MS).await {
                        tracing::warn!(%sn, order = order_id, error = %e, "order not cached");
                    }
                }
                .into_actor(self),
            );
        }
        let before_sem = self.before_sem(run.course.door);
        if let Some(run) = self.held.as_mut().and_then(Held::door_mut) {
            run.before = before;
            run.before_sem = before_sem;
        }
    }

    /// The held session is ending: its order, if a purchase's, out of the cache.
    pub(super) fn forget_order(&mut self, ctx: &mut Context<Self>) {
        let Some(order_id) = self.door_run().and_then(|r| r.course.purpose.order_id()) else { return };
        let (cache, sn) = (self.svc.cache.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                if let Err(e) = cache.order_forget(order_id).await {
                    tracing::warn!(%sn, order = order_id, error = %e, "order not dropped from the cache; it lapses");
                }
            }
            .into_actor(self),
        );
    }

    /// A purchase whose door has not opened is normally ended by its timers (auth timeout, door
    /// check), which tell this actor. They may run on another node, or their word may be lost:
    /// after they must have fired, look at the order, and let go of the cabinet when it has ended.
    fn watch_order(&mut self, session_id: i64, ctx: &mut Context<Self>) {
        let o = &self.svc.config.orders;
        let after = Duration::from_secs(o.auth_timeout_s + 2 * o.open_check_s + 10);
        ctx.run_later(after, move |act, ctx| {
            let waiting = act.door_run().filter(|r| matches!(r.course.phase, Phase::AwaitingAuth | Phase::Opening));
            let Some(order_id) = waiting.and_then(|r| r.course.purpose.order_id()) else { return };
            let db = act.db.clone();
            ctx.spawn(async move { db.run(move |c| crate::db::orders::find(c, order_id)).await }.into_actor(act).map(
                move |r, act, ctx| match r {
                    Ok(Some(o)) if o.status.is_final() => {
                        tracing::warn!(sn = %act.sn, order = order_id, status = %o.status, "purchase ended elsewhere; letting go");
                        act.drive(session_id, Event::OrderEnded, ctx);
                    }
                    Ok(_) => act.watch_order(session_id, ctx),
                    Err(e) => {
                        tracing::warn!(sn = %act.sn, order = order_id, error = %e, "order not read; looking again later");
                        act.watch_order(session_id, ctx);
                    }
                },
            ));
        });
    }

    pub(super) fn tolerance(&self, l: &LaneState) -> Grams {
        l.setup.tolerance_g.unwrap_or(self.svc.config.weights.default_tolerance_g)
    }

    /// The weight on each lane of `door` as it rests now, with its standard uncertainty: its rest
    /// (outliers left out, known as well as its counts need), else its tracked baseline, else its
    /// rest as precisely as its readings allow, else the median of its readings (the door is
    /// closed, so the lane is at rest) counted as one reading.
    fn weigh_lanes(&self, door: u32) -> Vec<(String, Grams, Grams)> {
        self.lanes
            .iter()
            .filter(|l| l.setup.door == door && l.setup.cal.is_some())
            .filter_map(|l| {
                let (g, sem) = match (self.rest_of(l), l.baseline) {
                    (Ok(r), _) => (r.mean_g, r.sem_g),
                    (Err(why), Some(b)) => {
                        tracing::debug!(sn = %self.sn, lane = %l.setup.code, ?why, sem_g = b.sem_g.0, "weighed by its baseline");
                        (b.g, b.sem_g)
                    }
                    (Err(why), None) => match self.weigh_after(l, true) {
                        Some(rest) => {
                            tracing::debug!(sn = %self.sn, lane = %l.setup.code, ?why, sem_g = rest.1.0, "weighed by a rough rest");
                            rest
                        }
                        None => {
                            tracing::debug!(sn = %self.sn, lane = %l.setup.code, ?why, noise_g = self.noise_of(l), "weighed by its median");
                            (l.window.median()?, Grams(self.noise_of(l)))
                        }
                    },
                };
                Some((l.setup.code.clone(), g, sem))
            })
            .collect()
    }

    fn weigh_door(&self, door: u32) -> Vec<(String, Grams)> {
        self.weigh_lanes(door).into_iter().map(|(code, g, _)| (code, g)).collect()
    }

    fn before_sem(&self, door: u32) -> BTreeMap<String, Grams> {
        self.weigh_lanes(door).into_iter().map(|(code, _, sem)| (code, sem)).collect()
    }

    /// Lane `l` after the door closed: at rest as precisely as its counts need, or — once the
    /// wait is over (`late`) — as precisely as its readings allow, the count then judging whether
    /// that is enough.
    fn weigh_after(&self, l: &LaneState, late: bool) -> Option<(Grams, Grams)> {
        let rest = match self.rest_of(l) {
            Ok(r) => Ok(r),
            Err(_) if late => self.rest_within(l, self.svc.config.weights.late_sem_factor * self.need_sem(l)),
            Err(e) => Err(e),
        };
        rest.ok().map(|r| (r.mean_g, r.sem_g))
    }

    /// The doors are closed and a session has just ended: what each lane rests at now, as
    /// precisely as its readings allow, is its baseline. The next shopper's weights before are
    /// then known at once, with their uncertainty, rather than re-learnt from the slow
    /// closed-door readings.
    fn seed_baselines(&mut self) {
        if !self.doors.open.is_empty() {
            return;
        }
        let now = super::now_ms();
        let seeds: Vec<Option<Baseline>> = self
            .lanes
            .iter()
            .map(|l| {
                let (g, sem_g) = self.weigh_after(l, true)?;
                Some(Baseline { g, sem_g, at_ms: now, followed_g: Grams::ZERO })
            })
            .collect();
        for (l, seed) in self.lanes.iter_mut().zip(seeds) {
            l.baseline = seed;
        }
    }

    fn send_open(&mut self, session_id: i64, door: u32, ctx: &mut Context<Self>) {
        let cmd = OpenCmd { door, session_id, unlock_s: self.svc.config.orders.unlock_s };
        self.issue(DownKind::Open, &cmd, Some(session_id), Purpose::Open { door }, ctx);
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
        if let Some(session_id) = session_id {
            self.drive(session_id, Event::OpenDone { acked }, ctx);
        }
    }

    /// A door event, after the door bookkeeping in `weights`.
    pub(super) fn door_event(&mut self, d: &DoorUp, ctx: &mut Context<Self>) {
        let held = match &self.held {
            Some(Held::Door(info, run)) if run.course.door == d.door => Some(info.id),
            _ => None,
        };
        let Some(session_id) = held else {
            // An installer stocking a cabinet that is not in service yet is no alarm.
            let installing = self.setup.status == CabinetStatus::Initializing;
            let calibrating = self.held.as_ref().is_some_and(|h| h.kind() == SessionKind::Calibration);
            if d.open && !installing && !calibrating {
                self.door_open_unheld(d.door, ctx);
            }
            return;
        };
        let event = if d.open { Event::DoorOpened } else { Event::DoorClosed };
        if !d.open && self.door_run().is_some_and(|r| r.course.phase == Phase::Opening) {
            tracing::warn!(sn = %self.sn, door = d.door, "door reported closed before its open was seen; settling");
        }
        self.drive_with(session_id, event, d.counts.as_deref(), ctx);
    }

    /// A door opened that no session holds: goods are unguarded. Critical, for a person to see.
    fn door_open_unheld(&mut self, door: u32, ctx: &mut Context<Self>) {
        tracing::error!(sn = %self.sn, door, "door open with no session holding it");
        self.raise(alert::door_open_unheld(self.sn.as_str(), door), ctx);
    }

    /// After a login the cabinet reports every door that is open before its first heartbeat or
    /// weight (device protocol §8). A session's door it did not report open has closed while
    /// Heft could not hear it: settle it from the readings that come now.
    pub(super) fn doors_reported(&mut self, ctx: &mut Context<Self>) {
        let Some(Held::Door(info, run)) = &self.held else { return };
        if run.course.phase != Phase::Open || self.doors.open.contains(&run.course.door) {
            return;
        }
        let (session_id, door) = (info.id, run.course.door);
        tracing::warn!(sn = %self.sn, door, "door not reported open after the login: it closed unseen; settling");
        self.drive(session_id, Event::ClosedUnseen, ctx);
    }

    /// The door opened: the weights before are weighed again on the closed-door readings that
    /// came since the authorisation, the reading sent with the event fills lanes with no weight
    /// yet, and a lane that disagrees with its resting weight is noted on the order (someone may
    /// have been at it).
    fn door_opened(&mut self, counts: Option<&[i64]>, ctx: &mut Context<Self>) {
        let Some(door) = self.door_run().map(|r| r.course.door) else { return };
        let fresh = self.weigh_lanes(door);
        let snapshot: Vec<(String, Grams)> = match counts {
            Some(counts) => self
                .lanes
                .iter()
                .filter(|l| l.setup.door == door)
                .filter_map(|l| Some((l.setup.code.clone(), l.setup.cal?.grams(*counts.get(l.setup.channel)?))))
                .collect(),
            None => Vec::new(),
        };
        let allowed: Vec<(String, Grams)> =
            self.lanes.iter().map(|l| (l.setup.code.clone(), self.tolerance(l) * 3.0)).collect();
        let Some(run) = self.held.as_mut().and_then(Held::door_mut) else { return };
        course::refine_before(&mut run.before, &mut run.before_sem, &fresh);
        let allowed_g = |lane: &str| allowed.iter().find(|(l, _)| l == lane).map_or(Grams(15.0), |t| t.1);
        let differ = course::merge_opening(&mut run.before, &snapshot, allowed_g);
        self.record_door_opened(differ, ctx);
    }

    /// The order is `door_open`, with the weights it started from (and a notice naming the lanes
    /// that weighed differently at the open than at rest). Idempotent: written again when in doubt.
    fn record_door_opened(&mut self, differ: Vec<String>, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run() else { return };
        let Some(order_id) = run.course.purpose.order_id() else { return };
        let before = before_json(&run.before);
        let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
        ctx.spawn(
            async move {
                match flows::door::opened(&db, order_id, before, differ).await {
                    Ok(()) => live.publish(Change::Order { id: order_id }),
                    Err(e) => tracing::error!(%sn, order = order_id, error = %e, "door open not recorded"),
                }
            }
            .into_actor(self),
        );
    }

    /// The order is `settling`; `unseen_open`: its open is recorded first, with the weights taken
    /// at the authorisation.
    fn record_door_closed(&mut self, unseen_open: bool, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run() else { return };
        let Some(order_id) = run.course.purpose.order_id() else { return };
        let opened_before = unseen_open.then(|| before_json(&run.before));
        let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
        ctx.spawn(
            async move {
                match flows::door::closed(&db, order_id, opened_before).await {
                    Ok(()) => live.publish(Change::Order { id: order_id }),
                    Err(e) => tracing::error!(%sn, order = order_id, error = %e, "door close not recorded"),
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
        let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
        ctx.spawn(
            async move {
                match flows::door::open_too_long(&db, order_id).await {
                    Ok(()) => live.publish(Change::Order { id: order_id }),
                    Err(e) => tracing::error!(%sn, order = order_id, error = %e, "door-open notice not stored"),
                }
            }
            .into_actor(self),
        );
    }

    /// A weight reading, after it entered the lanes' windows.
    pub(super) fn door_reading(&mut self, kind: ReadingKind, ctx: &mut Context<Self>) {
        let Some(Held::Door(info, run)) = &self.held else { return };
        let session_id = info.id;
        let all_stable = self.lane_readings(run, |l| self.weigh_after(l, false)).iter().all(|r| r.after_g.is_some());
        let closed = matches!(kind, ReadingKind::AfterClose | ReadingKind::Closed);
        self.drive(session_id, Event::Reading { closed, all_stable }, ctx);
    }

    /// While the door is open: the basket's estimated value against the pre-authorisation's cap.
    fn watch_basket(&mut self, session_id: i64, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run() else { return };
        let course::Purpose::Purchase { order_id, cap_fen } = run.course.purpose else { return };
        let readings = self.lane_readings(run, |l| l.window.latest().map(|g| (g, Grams::ZERO)));
        let current: Vec<Option<Grams>> = readings.iter().map(|r| r.after_g).collect();
        let estimate = settlement::estimate_basket_fen(&readings, &current);
        let Some(excess_fen) = settlement::over_cap(estimate, cap_fen) else { return };
        tracing::warn!(sn = %self.sn, order = order_id, %estimate, %cap_fen, "basket over the pre-authorisation cap");
        self.drive(session_id, Event::OverCap { excess_fen }, ctx);
    }

    fn notice_over_cap(&mut self, order_id: Option<i64>, excess_fen: Fen, ctx: &mut Context<Self>) {
        let Some(order_id) = order_id else { return };
        let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
        ctx.spawn(
            async move {
                match flows::door::over_cap(&db, order_id, excess_fen).await {
                    Ok(()) => live.publish(Change::Order { id: order_id }),
                    Err(e) => tracing::error!(%sn, order = order_id, error = %e, "over-cap notice not stored"),
                }
            }
            .into_actor(self),
        );
    }

    /// The lanes of the run's door that hold a product, with `after` read by `after`.
    fn lane_readings(&self, run: &DoorRun, after: impl Fn(&LaneState) -> Option<(Grams, Grams)>) -> Vec<LaneReading> {
        self.lanes
            .iter()
            .filter(|l| l.setup.door == run.course.door)
            .filter_map(|l| {
                let before = run.before.iter().find(|(code, _)| *code == l.setup.code).map(|b| b.1);
                let before_sem = run.before_sem.get(&l.setup.code).copied().unwrap_or(Grams(self.noise_of(l)));
                let after = after(l);
                Some(LaneReading {
                    lane: l.setup.code.clone(),
                    product_id: l.setup.product_id?,
                    product_name: l.setup.product_name.clone().unwrap_or_default(),
                    unit_g: l.setup.unit_g?,
                    tolerance_g: self.tolerance(l),
                    price_fen: l.setup.price_fen?,
                    before_g: before,
                    after_g: after.map(|a| a.0),
                    before_sem_g: before_sem,
                    after_sem_g: after.map_or(Grams::ZERO, |a| a.1),
                })
            })
            .collect()
    }

    /// Every calibrated lane of the run's door, product or not: its weight before, after (stable),
    /// and the tolerance a change is judged by.
    fn lane_changes(&self, run: &DoorRun) -> Vec<LaneChange> {
        self.lanes
            .iter()
            .filter(|l| l.setup.door == run.course.door && l.setup.cal.is_some())
            .map(|l| LaneChange {
                lane: l.setup.code.clone(),
                before_g: run.before.iter().find(|(code, _)| *code == l.setup.code).map(|b| b.1),
                after_g: self.weigh_after(l, true).map(|a| a.0),
                tolerance_g: self.tolerance(l),
            })
            .collect()
    }

    /// The readings each lane of `door` holds now, oldest first (JSON): what a settlement judged.
    fn evidence(&self, door: u32) -> String {
        let lanes: BTreeMap<&str, Vec<Grams>> = self
            .lanes
            .iter()
            .filter(|l| l.setup.door == door)
            .map(|l| (l.setup.code.as_str(), l.window.recent()))
            .collect();
        serde_json::to_string(&lanes).unwrap_or_default()
    }

    /// Settle (purchase), count (restock) or record (maintenance) from the lanes' stable weights
    /// now; lanes that never settled send a purchase to review. `wait`: nothing else of this
    /// cabinet is handled before the end is stored, so the next scan finds the cabinet free and
    /// the stock right.
    fn finish(&mut self, session_id: i64, ctx: &mut Context<Self>) {
        let Some(run) = self.door_run() else { return };
        let readings = self.lane_readings(run, |l| self.weigh_after(l, true));
        let evidence = self.evidence(run.course.door);
        let (db, sn, w) = (self.db.clone(), self.sn.to_string(), &self.svc.config.weights);
        let (settle_rule, count_rule) = (w.settle_rule(), w.count_rule());
        let stored: Pin<Box<dyn Future<Output = Result<(), DbError>>>> = match run.course.purpose.clone() {
            course::Purpose::Purchase { order_id, .. } => {
                if let Some(w) = run.closed_at.map(|t| t.elapsed()) {
                    self.svc.metrics.settle_seconds.observe(w.as_secs_f64());
                }
                tracing::debug!(%sn, order = order_id, ?readings, "settling from these weights");
                let runner = self.svc.effects.clone();
                Box::pin(async move {
                    let (settled, effects) =
                        flows::settle::settle(&db, &sn, order_id, readings, evidence, &settle_rule).await?;
                    runner.run(effects);
                    match settled {
                        Settled::Now(o) => {
                            tracing::info!(%sn, order = order_id, status = %o.status, "purchase settled")
                        }
                        Settled::Already(o) => {
                            tracing::info!(%sn, order = order_id, status = %o.status, "purchase was already settled")
                        }
                        // Raised for a person, and the session ended failed, by the flow.
                        Settled::Refused(..) => {}
                    }
                    Ok(())
                })
            }
            course::Purpose::Restock { by } => {
                let runner = self.svc.effects.clone();
                Box::pin(async move {
                    let effects = flows::restock::finish(&db, sn, session_id, readings, by, &count_rule).await?;
                    runner.run(effects);
                    Ok(())
                })
            }
            course::Purpose::Maintenance { by } => {
                let changes = self.lane_changes(run);
                Box::pin(async move { flows::restock::finish_maintenance(&db, sn, session_id, changes, by).await })
            }
        };
        ctx.wait(stored.into_actor(self).map(move |r, act, ctx| {
            if let Err(e) = &r {
                tracing::error!(sn = %act.sn, session = session_id, error = %e, "door session end not stored; retrying");
            }
            act.drive(session_id, Event::Finished { stored: r.is_ok() }, ctx);
        }));
    }

    /// The door session's end is stored: free the cabinet, start each lane's baseline from the
    /// rest its end was judged on, read the new book stock, and deliver whatever waited for the
    /// cabinet.
    fn let_go(&mut self, ctx: &mut Context<Self>) {
        self.forget_order(ctx);
        self.held = None;
        self.reset_baselines();
        self.seed_baselines();
        self.reload_stock(ctx);
        self.deliver_pending(ctx);
    }

    /// Book stock changed in the database: read it again for the ops view.
    fn reload_stock(&mut self, ctx: &mut Context<Self>) {
        let (svc, sn) = (self.svc.clone(), self.sn.to_string());
        ctx.spawn(async move { super::load_setup(&svc, &sn).await }.into_actor(self).map(|r, act, _| match r {
            Ok(setup) => act.apply_setup(setup),
            Err(e) => tracing::warn!(sn = %act.sn, error = %e, "book stock not read again; the ops view may lag"),
        }));
    }
}
