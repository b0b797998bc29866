//! One actor per cabinet. It owns the login (boot and seq, the replay guard), heartbeat facts and
//! liveness recovery, the lanes' calibration and weights (`lanes`, `weights`), commands with their
//! acks (`commands`), and the one session that may hold the cabinet (`held`): deliveries and
//! calibration (`session`, `requests`) and sessions at an open door (`door`, whose course is the
//! pure state machine `domain::door`).
//!
//! State is loaded from the database when the actor starts. A restarted actor cannot know the
//! last seq it accepted, so rather than guess (and open a replay window) it asks the cabinet to
//! log in again.

mod commands;
pub mod door;
pub mod held;
pub mod lanes;
pub mod requests;
pub mod session;
pub mod weights;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use self::held::{DoorView, Held, Pending, SessionError, SessionInfo};
use self::lanes::{Doors, LaneSetup, LaneState, LaneWeight, Setup, Versions};
use super::ownership::LeaseLost;
use super::{Shared, now_ms};
use crate::db::{self, DbError, alerts, cabinets, commands as command_rows, layout, sessions};
use crate::device::bridge::Inbound;
use crate::device::frame::{self, AnyUp, Cadence, CommandTiming, Envelope, Heartbeat, Login, LoginAck, Reject};
use crate::device::messages::{AckUp, DoorUp, WeightUp};
use crate::device::topic::{self, DownKind, UpKind};
use crate::domain::alert::{self, AlertCode};
use crate::domain::cabinet::{CabinetStatus, Sn};
use crate::domain::live::Change;
use crate::domain::liveness::{self, Liveness};
use crate::domain::temperature::{TempRule, TempWatch};
use crate::domain::weight::LaneCalibration;

/// How long an actor for a serial number that is not provisioned stays around, answering
/// `unknown_cabinet`, so a flood of such frames does not become a flood of database reads.
const UNKNOWN_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
enum State {
    Loading,
    /// No such cabinet is provisioned.
    Unknown,
    /// Provisioned, not (or no longer) logged in on this node.
    AwaitingLogin,
    Session {
        boot: u64,
        last_seq: u64,
    },
}

pub struct CabinetActor {
    sn: Sn,
    svc: Shared,
    /// Where the actor writes: fenced with its ownership epoch once it owns the cabinet, so a
    /// write after another node took the cabinet over is refused (`DbError::Fenced`).
    db: crate::db::Db,
    /// The epoch of this node's ownership of the cabinet, while the actor holds it.
    epoch: Option<u64>,
    state: State,
    key: Vec<u8>,
    last_boot: u64,
    liveness: Liveness,
    /// After a crash: ask the cabinet to log in again as soon as the state is loaded.
    restarted: bool,
    down_seq: u64,
    /// Per rejection reason: when an alert was last written, and how many were not since.
    alerted: HashMap<Reject, (Instant, u64)>,
    last_relogin_request: Option<Instant>,
    last_key_reload: Option<Instant>,
    notice: DeathNotice,
    setup: Setup,
    lanes: Vec<LaneState>,
    doors: Doors,
    /// Logged in, and no heartbeat or weight since: the cabinet is still reporting its open doors
    /// (device protocol §8); the first heartbeat or weight says it has finished.
    doors_reporting: bool,
    /// The session that holds the cabinet, if any.
    held: Option<Held>,
    /// A delivery session is being opened (its database write is in flight).
    opening: bool,
    pending: HashMap<String, Pending>,
    temp_rule: Option<TempRule>,
    temp_watch: TempWatch,
    /// Per delivery kind, the version whose delivery last failed: not retried before the next login.
    failed_deliveries: HashMap<crate::domain::session::SessionKind, i64>,
    /// A `channel_count` alert was raised since the login (once per login is enough).
    channels_alerted: bool,
    /// When lane weights last went to the live view.
    live_weights_at: Option<Instant>,
    /// When the lanes' health was last added to `lane_health`.
    health_written_at: Option<Instant>,
}

impl CabinetActor {
    /// Tell the live view that this cabinet's stored state changed (a session, an alert, its
    /// status): its row is read again.
    pub(super) fn changed(&self) {
        self.svc.live.publish(Change::Cabinet { sn: self.sn.to_string() });
    }
}

/// A cabinet's actor is gone: it stopped on purpose, or it crashed (and is to be started again).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Gone {
    pub sn: String,
    /// Which actor of the cabinet it was, so a late word from an old one is ignored.
    pub generation: u64,
    pub crashed: bool,
}

/// Tells whoever supervises the actor (the registry) when it is gone, and keeps the gauges right.
///
/// When a handler panics, tokio drops the actor's task, and actix's drop of the context still
/// runs `stopped`. So "stopped" alone does not mean "stopped on purpose": the actor says so
/// itself (`on_purpose`) before its few deliberate stops; every other end is a crash.
struct DeathNotice {
    sn: String,
    generation: u64,
    supervisor: Recipient<Gone>,
    svc: Shared,
    on_purpose: bool,
    reported: bool,
    connected: bool,
}

impl DeathNotice {
    fn report(&mut self) {
        if self.reported {
            return;
        }
        self.reported = true;
        let (sn, generation) = (self.sn.clone(), self.generation);
        self.supervisor.do_send(Gone { sn, generation, crashed: !self.on_purpose });
    }
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        self.svc.metrics.cabinet_actors.dec();
        if self.connected {
            self.svc.metrics.cabinets_connected.dec();
        }
        self.report();
    }
}

impl CabinetActor {
    pub fn new(sn: Sn, svc: Shared, supervisor: Recipient<Gone>, generation: u64, restarted: bool) -> Self {
        svc.metrics.cabinet_actors.inc();
        let notice = DeathNotice {
            sn: sn.to_string(),
            generation,
            supervisor,
            svc: svc.clone(),
            on_purpose: false,
            reported: false,
            connected: false,
        };
        CabinetActor {
            sn,
            db: svc.db.clone(),
            svc,
            epoch: None,
            state: State::Loading,
            key: Vec::new(),
            last_boot: 0,
            liveness: Liveness::Offline,
            restarted,
            down_seq: 0,
            alerted: HashMap::new(),
            last_relogin_request: None,
            last_key_reload: None,
            notice,
            setup: Setup::default(),
            lanes: Vec::new(),
            doors: Doors::default(),
            doors_reporting: false,
            held: None,
            opening: false,
            pending: HashMap::new(),
            temp_rule: None,
            temp_watch: TempWatch::default(),
            failed_deliveries: HashMap::new(),
            channels_alerted: false,
            live_weights_at: None,
            health_written_at: None,
        }
    }

    /// The boot of the current login, if the cabinet is logged in.
    fn session_boot(&self) -> Option<u64> {
        match self.state {
            State::Session { boot, .. } => Some(boot),
            _ => None,
        }
    }

    /// A status change goes to the cache, where the ops API and nearby search read it.
    fn publish_status(&mut self, status: CabinetStatus, ctx: &mut Context<Self>) {
        self.setup.status = status;
        tracing::info!(sn = %self.sn, %status, "cabinet status");
        self.changed();
        let (cache, sn, status) = (self.svc.cache.clone(), self.sn.to_string(), status.as_str().to_string());
        // `wait`: two quick changes must reach the cache in order.
        ctx.wait(
            async move {
                if let Err(e) = cache.cabinet_set(&sn, &[("status", status)]).await {
                    tracing::warn!(%sn, error = %e, "status not cached");
                }
            }
            .into_actor(self),
        );
    }

    /// After a configuration change: status and position to the cache and the GEO index.
    fn publish_setup(&mut self, ctx: &mut Context<Self>) {
        self.publish_status(self.setup.status, ctx);
        let Some((lat, lng)) = self.setup.position else { return };
        let (cache, sn) = (self.svc.cache.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                let fields = [("lat", lat.to_string()), ("lng", lng.to_string())];
                if let Err(e) = cache.cabinet_set(&sn, &fields).await {
                    tracing::warn!(%sn, error = %e, "cabinet position not cached");
                }
                if let Err(e) = cache.geo_add(&sn, lng, lat).await {
                    tracing::warn!(%sn, error = %e, "cabinet position not indexed");
                }
            }
            .into_actor(self),
        );
    }

    fn set_connected(&mut self, connected: bool) {
        if self.notice.connected != connected {
            self.notice.connected = connected;
            if connected {
                self.svc.metrics.cabinets_connected.inc();
            } else {
                self.svc.metrics.cabinets_connected.dec();
            }
        }
    }

    fn set_liveness(&mut self, l: Liveness) {
        self.liveness = l;
        let in_session = matches!(self.state, State::Session { .. });
        self.set_connected(in_session && l != Liveness::Offline);
    }

    /// Commands carry an increasing sequence; starting from the clock keeps it increasing across
    /// restarts of the actor and of Heft.
    fn next_down_seq(&mut self) -> u64 {
        self.down_seq = (self.down_seq + 1).max(now_ms().max(0) as u64);
        self.down_seq
    }

    fn send_down<T: serde::Serialize>(&self, kind: DownKind, m: &T) {
        let topic = topic::down(self.sn.as_str(), kind);
        let result = frame::sign(&self.key, &topic, m)
            .map_err(|e| e.to_string())
            .and_then(|payload| self.svc.downlink.publish(topic.clone(), payload).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(sn = %self.sn, %topic, error = %e, "could not send to cabinet");
        }
    }

    fn send_login_ack(&mut self, boot: u64, refused: Option<&str>) {
        let seq = self.next_down_seq();
        let p = &self.svc.config.protocol;
        let ack = LoginAck {
            boot,
            seq,
            ok: refused.is_none(),
            reason: refused.map(str::to_string),
            last_boot: (refused == Some("stale_boot")).then_some(self.last_boot),
            server_time_ms: now_ms(),
            cadence: refused.is_none().then_some(Cadence {
                heartbeat_s: p.heartbeat_s,
                closed_weight_s: p.closed_weight_s,
                open_weight_ms: p.open_weight_ms,
                after_close_weight_ms: p.after_close_weight_ms,
                after_close_s: p.after_close_s,
            }),
            commands: refused
                .is_none()
                .then_some(CommandTiming { timeout_ms: p.command_timeout_ms, retries: p.command_retries }),
            channels: (refused.is_none() && self.setup.channels > 0).then_some(self.setup.channels),
        };
        self.send_down(DownKind::LoginAck, &ack);
    }

    /// Ask the cabinet for a fresh login, at most once per `protocol.relogin_interval_s`.
    fn request_login(&mut self) {
        let interval = Duration::from_secs(self.svc.config.protocol.relogin_interval_s);
        if self.last_relogin_request.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.last_relogin_request = Some(Instant::now());
        self.send_login_ack(self.last_boot, Some("login_required"));
    }

    /// Check and apply one frame. Errors are the reason it was dropped.
    fn accept(&mut self, f: &Inbound, ctx: &mut Context<Self>) -> Result<Option<i64>, Reject> {
        match self.state {
            State::Unknown => return Err(Reject::UnknownCabinet),
            State::Loading => return Err(Reject::NotLoggedIn),
            _ => {}
        }
        let env = Envelope::parse(&f.payload)?;
        env.verify(&f.topic, &self.key)?;
        if f.kind == UpKind::Login {
            let login: Login = env.message()?;
            let ts = login.h.ts;
            self.login(login, ctx)?;
            return Ok(ts);
        }
        let State::Session { boot, last_seq } = self.state else {
            self.request_login();
            return Err(Reject::NotLoggedIn);
        };
        let header = env.message::<AnyUp>()?.h;
        if header.boot != boot {
            return Err(Reject::WrongBoot);
        }
        if header.seq <= last_seq {
            return Err(Reject::Replay);
        }
        if self.doors_reporting && matches!(f.kind, UpKind::Heartbeat | UpKind::Weight) {
            self.doors_reporting = false;
            self.doors_reported(ctx);
        }
        match f.kind {
            UpKind::Heartbeat => {
                let hb: Heartbeat = env.message()?;
                self.heartbeat(hb, ctx);
            }
            UpKind::Weight => self.on_weight(env.message::<WeightUp>()?, ctx),
            UpKind::Door => self.on_door(env.message::<DoorUp>()?, ctx),
            UpKind::Ack => self.on_ack(env.message::<AckUp>()?, ctx),
            UpKind::Login | UpKind::Event => {}
        }
        self.state = State::Session { boot, last_seq: header.seq };
        Ok(header.ts)
    }

    fn login(&mut self, login: Login, ctx: &mut Context<Self>) -> Result<(), Reject> {
        let boot = login.h.boot;
        if login.proto != frame::PROTOCOL_VERSION {
            self.send_login_ack(boot, Some("unsupported_protocol"));
            return Err(Reject::BadMessage);
        }
        if boot == self.last_boot {
            // The login already accepted, sent again: by anyone (the broker has no topic ACLs).
            // No answer: a signed refusal for the current boot would send the cabinet into
            // another login, and a replayer could keep it there.
            return Err(Reject::Replay);
        }
        if boot < self.last_boot {
            self.send_login_ack(boot, Some("stale_boot"));
            return Err(Reject::StaleBoot);
        }
        if let Some(ts) = login.h.ts {
            let skew_s = now_ms().saturating_sub(ts).saturating_abs() / 1000;
            if skew_s > i64::try_from(self.svc.config.security.max_clock_skew_s).unwrap_or(i64::MAX) {
                tracing::warn!(sn = %self.sn, skew_s, "cabinet clock is off; login_ack carries server_time_ms");
            }
        }
        let record = cabinets::LoginRecord {
            sn: self.sn.to_string(),
            boot: i64::try_from(boot).map_err(|_| Reject::BadMessage)?,
            node_id: self.svc.node_id().to_string(),
            firmware: login.fw.clone(),
            lat: login.lat,
            lng: login.lng,
            at: db::now(),
        };
        let seq = login.h.seq;
        let svc = self.svc.clone();
        let me = ctx.address().recipient();
        // Nothing held here: a session another node (or an earlier actor) left is taken up.
        let take_over = self.held.is_none() && !self.opening;
        // `wait`: no other frame of this cabinet is handled until the login is stored, so the
        // frames that follow it see the new session.
        ctx.wait(async move { persist_login(&svc, record, me, take_over).await }.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(LoginDone::Accepted { previous, epoch, resume }) => {
                    act.own(epoch);
                    act.last_boot = boot;
                    act.state = State::Session { boot, last_seq: seq };
                    if previous != Liveness::Online {
                        act.svc.metrics.liveness_transitions.with_label_values(&[Liveness::Online.as_str()]).inc();
                    }
                    act.set_liveness(Liveness::Online);
                    act.send_login_ack(boot, None);
                    tracing::info!(sn = %act.sn, boot, "cabinet logged in");
                    // A new boot starts with doors as the cabinet reports them from now on, and
                    // with a fresh chance for deliveries that failed before.
                    act.doors = Doors::default();
                    act.doors_reporting = true;
                    act.channels_alerted = false;
                    act.failed_deliveries.clear();
                    act.resume(resume.map(|r| *r), ctx);
                    act.deliver_pending(ctx);
                    act.weigh_if_settling(ctx);
                }
                Ok(LoginDone::Stale { last_boot }) => {
                    act.last_boot = last_boot;
                    act.send_login_ack(boot, Some("stale_boot"));
                }
                Ok(LoginDone::Unknown) => act.state = State::Unknown,
                // No ack: the cabinet times out and logs in again with the next boot.
                Err(e) => tracing::error!(sn = %act.sn, error = %e, "could not store login"),
            },
        ));
        Ok(())
    }

    /// This node owns the cabinet under `epoch`: from now on every write carries it.
    fn own(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
        let fence = crate::db::Fence { sn: self.sn.to_string(), epoch: i64::try_from(epoch).unwrap_or(i64::MAX) };
        self.db = self.svc.db.fenced(fence);
    }

    /// Take up a session left open: by an earlier actor here, or by the node that owned the
    /// cabinet before.
    fn resume(&mut self, resume: Option<Resume>, ctx: &mut Context<Self>) {
        match resume {
            Some(Resume::Purchase(session, order, before)) => self.resume_purchase(&session, &order, before, ctx),
            Some(Resume::Door(session)) => self.resume_door_session(&session, ctx),
            None => {}
        }
    }

    fn heartbeat(&mut self, hb: Heartbeat, ctx: &mut Context<Self>) {
        self.svc.metrics.heartbeats.inc();
        self.check_temperature(hb.temp_c, ctx);
        self.svc.live.publish(Change::Temperature { sn: self.sn.to_string(), temp_c: hb.temp_c });
        let svc = self.svc.clone();
        let sn = self.sn.to_string();
        let fields = [("temperature_c", hb.temp_c.to_string()), ("heating", hb.heating.to_string())];
        // The actor's own view counts too: if the watchdog's cache write failed, the cache may
        // still say online while the database says offline.
        let known_online = self.liveness == Liveness::Online;
        // `wait`, not `spawn`: spawned futures of one actor may finish in any order, and an
        // older heartbeat must never overwrite a newer one in the cache.
        ctx.wait(
            async move {
                let prior = svc.cache.record_heartbeat(&sn, now_ms(), &fields).await?;
                if prior.is_none() {
                    refill(&svc, &sn).await?;
                }
                match prior.as_deref().and_then(Liveness::parse) {
                    Some(l) if liveness::on_heard(l).is_none() && known_online => Ok(false),
                    // Suspect, offline, or unknown to the cache (say, Redis restarted): the
                    // database decides, and records the change once.
                    _ => recover(&svc, &sn).await,
                }
            }
            .into_actor(self)
            .map(|result: Result<bool, SessionError>, act, _| match result {
                Ok(true) => {
                    act.svc.metrics.liveness_transitions.with_label_values(&[Liveness::Online.as_str()]).inc();
                    act.set_liveness(Liveness::Online);
                    tracing::info!(sn = %act.sn, "cabinet back online");
                }
                Ok(false) => act.set_liveness(Liveness::Online),
                Err(e) => tracing::warn!(sn = %act.sn, error = %e, "heartbeat not recorded"),
            }),
        );
    }

    /// The cabinet may have been given new credentials (`heft provision --rotate`) since this
    /// actor loaded its key: on a bad signature, reload it so the new key works and the old one
    /// stops working without a restart. At most once per relogin interval — bad frames are cheap
    /// to send — except when the cabinet has connected with its own token since the last reload:
    /// a rotated cabinet reconnects with its new token, which no forger has, so forged frames
    /// cannot hold its new key back.
    fn reload_key(&mut self, ctx: &mut Context<Self>) {
        let interval = Duration::from_secs(self.svc.config.protocol.relogin_interval_s);
        let recent = self.last_key_reload.is_some_and(|t| t.elapsed() < interval);
        if recent && !self.svc.connects.since(self.sn.as_str(), self.last_key_reload) {
            return;
        }
        self.last_key_reload = Some(Instant::now());
        ctx.wait(load(self.svc.clone(), self.sn.to_string()).into_actor(self).map(|result, act, _| {
            if let Ok(Some(loaded)) = result
                && loaded.key != act.key
            {
                tracing::info!(sn = %act.sn, "cabinet frame key changed; using the new one");
                act.key = loaded.key;
            }
        }));
    }

    fn reject(&mut self, reason: Reject, ctx: &mut Context<Self>) {
        self.svc.metrics.rejected(reason);
        if reason == Reject::BadSignature {
            self.reload_key(ctx);
        }
        let Some(code) = reason.security_alert() else { return };
        let cooldown = Duration::from_secs(self.svc.config.security.alert_cooldown_s);
        let entry = self.alerted.entry(reason).or_insert((Instant::now() - cooldown * 2, 0));
        if entry.0.elapsed() < cooldown {
            entry.1 += 1;
            return;
        }
        let suppressed = entry.1;
        *entry = (Instant::now(), 0);
        tracing::warn!(sn = %self.sn, reason = reason.as_str(), suppressed, "security: frame dropped");
        let spec = alert::security(self.sn.as_str(), code, reason.as_str(), &reason.to_string(), suppressed);
        let occurrences = i64::try_from(suppressed).unwrap_or(i64::MAX).saturating_add(1);
        self.raise_counted(spec, occurrences, ctx);
    }
}

enum LoginDone {
    Accepted { previous: Liveness, epoch: u64, resume: Option<Box<Resume>> },
    Stale { last_boot: u64 },
    Unknown,
}

/// Take the cabinet's ownership and store the login under it, in one fenced transaction: from
/// its commit on, the node that owned the cabinet before cannot write for it. When the cache's
/// epoch is behind the database's (the cache lost it), ownership is taken again above it.
async fn owned_login(
    svc: &Shared,
    record: &cabinets::LoginRecord,
    me: &Recipient<LeaseLost>,
) -> Result<(u64, cabinets::LoginResult), SessionError> {
    if let Some(kept) = login_as_owner(svc, record, me).await? {
        return Ok(kept);
    }
    let sn = record.sn.clone();
    let mut floor = 0;
    loop {
        let epoch = svc.ownership.take(&sn, floor, me.clone()).await?;
        let fence = crate::db::Fence { sn: sn.clone(), epoch: i64::try_from(epoch).unwrap_or(i64::MAX) };
        match crate::flows::cabinet::login(&svc.db.fenced(fence), record.clone()).await {
            Err(DbError::Fenced { current, .. }) if floor == 0 => floor = u64::try_from(current).unwrap_or(0),
            Err(e) => {
                svc.ownership.give_up(&sn, epoch).await;
                return Err(e.into());
            }
            Ok(result) => {
                if !matches!(result, cabinets::LoginResult::Accepted { .. }) {
                    svc.ownership.give_up(&sn, epoch).await;
                }
                return Ok((epoch, result));
            }
        }
    }
}

/// A new login on the node that already owns the cabinet (a new boot on a live connection)
/// keeps the epoch it holds: a new one would fence this node's own writes still in flight under
/// it (the door records are spawned). `None` when the node does not hold it, or no longer does
/// (the cache names another owner, or the database has seen a larger epoch): then it is taken anew.
async fn login_as_owner(
    svc: &Shared,
    record: &cabinets::LoginRecord,
    me: &Recipient<LeaseLost>,
) -> Result<Option<(u64, cabinets::LoginResult)>, SessionError> {
    let sn = record.sn.as_str();
    let Some(epoch) = svc.ownership.epoch(sn) else { return Ok(None) };
    if svc.cache.owner(sn).await? != Some((svc.node_id().to_string(), epoch)) {
        return Ok(None);
    }
    svc.ownership.adopt(sn, epoch, me.clone());
    match crate::flows::cabinet::login(&owned_db(svc, sn, epoch), record.clone()).await {
        Ok(result) => Ok(Some((epoch, result))),
        Err(DbError::Fenced { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn persist_login(
    svc: &Shared,
    record: cabinets::LoginRecord,
    me: Recipient<LeaseLost>,
    take_over: bool,
) -> Result<LoginDone, SessionError> {
    let sn = record.sn.clone();
    let at_ms = now_ms();
    let (epoch, result) = owned_login(svc, &record, &me).await?;
    svc.live.publish(Change::Cabinet { sn: sn.clone() });
    let (previous, cabinet) = match result {
        cabinets::LoginResult::Accepted { previous, cabinet } => (previous, cabinet),
        cabinets::LoginResult::StaleBoot { last_boot } => {
            return Ok(LoginDone::Stale { last_boot: u64::try_from(last_boot).unwrap_or(0) });
        }
        cabinets::LoginResult::Unknown => return Ok(LoginDone::Unknown),
    };
    let resume = match take_over {
        true => to_resume(svc, &owned_db(svc, &sn, epoch), &sn).await?.map(Box::new),
        false => None,
    };
    let mut fields = cached_facts(&cabinet, Liveness::Online, svc.node_id());
    fields.push(("last_login_ms", at_ms.to_string()));
    if let (Some(lat), Some(lng)) = (cabinet.lat, cabinet.lng)
        && let Err(e) = svc.cache.geo_add(&sn, lng, lat).await
    {
        tracing::warn!(%sn, error = %e, "cabinet position not indexed");
    }
    svc.cache.cabinet_set(&sn, &fields).await?;
    svc.cache.heartbeat_track(&sn, at_ms).await?;
    Ok(LoginDone::Accepted { previous, epoch, resume })
}

/// The database handle of the cabinet's owner under `epoch`.
fn owned_db(svc: &Shared, sn: &str, epoch: u64) -> crate::db::Db {
    svc.db.fenced(crate::db::Fence { sn: sn.to_string(), epoch: i64::try_from(epoch).unwrap_or(i64::MAX) })
}

/// The cabinet hash's facts that the database also holds.
fn cached_facts(cabinet: &crate::db::models::Cabinet, liveness: Liveness, node: &str) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("sn", cabinet.sn.clone()),
        ("status", cabinet.status.as_str().to_string()),
        ("type", cabinet.cabinet_type.clone()),
        ("liveness", liveness.as_str().to_string()),
        ("node", node.to_string()),
        ("boot", cabinet.last_boot.to_string()),
    ];
    if let Some(fw) = &cabinet.firmware {
        fields.push(("firmware", fw.clone()));
    }
    if let (Some(lat), Some(lng)) = (cabinet.lat, cabinet.lng) {
        fields.push(("lat", lat.to_string()));
        fields.push(("lng", lng.to_string()));
    }
    fields
}

/// The cache did not know a cabinet that is heard from (Redis flushed or restarted): its hash
/// again from the database, and its position in the GEO index.
async fn refill(svc: &Shared, sn: &str) -> Result<(), SessionError> {
    let key = sn.to_string();
    let Some(cabinet) = svc.db.run(move |c| cabinets::find(c, &key)).await? else { return Ok(()) };
    svc.cache.cabinet_set(sn, &cached_facts(&cabinet, cabinet.liveness, svc.node_id())).await?;
    if let (Some(lat), Some(lng)) = (cabinet.lat, cabinet.lng) {
        svc.cache.geo_add(sn, lng, lat).await?;
    }
    tracing::info!(%sn, "cabinet facts cached again from the database");
    Ok(())
}

/// A cabinet marked suspect or offline was heard from: back online, with one event. The cache
/// then gets whatever the database holds, so the two cannot drift apart when another node or the
/// watchdog changed it in between.
async fn recover(svc: &Shared, sn: &str) -> Result<bool, SessionError> {
    let node = svc.node_id().to_string();
    let owned = sn.to_string();
    let (changed, now) = crate::flows::cabinet::back_online(&svc.db, owned, node).await?;
    if changed {
        svc.live.publish(Change::Cabinet { sn: sn.to_string() });
    }
    if let Some(now) = now {
        svc.cache.cabinet_set(sn, &[("liveness", now.as_str().to_string())]).await?;
    }
    Ok(changed)
}

struct Loaded {
    key: Vec<u8>,
    last_boot: u64,
    liveness: Liveness,
}

async fn load(svc: Shared, sn: String) -> Result<Option<Loaded>, SessionError> {
    let Some(row) = svc.db.run(move |c| cabinets::find(c, &sn)).await? else {
        return Ok(None);
    };
    let key = svc.seal.unseal(&row.frame_key_sealed)?;
    Ok(Some(Loaded { key, last_boot: u64::try_from(row.last_boot).unwrap_or(0), liveness: row.liveness }))
}

/// The configuration facts of a cabinet (lanes, products, versions, temperature range).
pub(crate) async fn load_setup(svc: &Shared, sn: &str) -> Result<Setup, SessionError> {
    let sn = sn.to_string();
    let setup = svc
        .db
        .run(move |c| match cabinets::find(c, &sn)? {
            Some(cab) => read_setup(c, cab),
            None => Ok(Setup::default()),
        })
        .await?;
    Ok(setup)
}

fn read_setup(c: &mut db::AnyConnection, cab: crate::db::models::Cabinet) -> Result<Setup, DbError> {
    let noise = db::lane_health::latest_noise(c, &cab.sn)?;
    let lanes = layout::lanes_with_products(c, &cab.sn)?
        .into_iter()
        .map(|(l, product)| LaneSetup {
            noise_g: noise.iter().find(|(lane, _)| *lane == l.code).map(|n| n.1),
            code: l.code,
            door: u32::try_from(l.door).unwrap_or(0),
            channel: usize::try_from(l.channel).unwrap_or(usize::MAX),
            cal: match (l.zero_counts, l.counts_per_g) {
                (Some(zero_counts), Some(counts_per_g)) => Some(LaneCalibration { zero_counts, counts_per_g }),
                _ => None,
            },
            product_id: l.product_id,
            unit_g: product.as_ref().map(|p| p.0),
            tolerance_g: product.as_ref().map(|p| p.1),
            price_fen: product.as_ref().map(|p| p.2),
            product_name: product.map(|p| p.3),
            stock: l.stock,
        })
        .collect();
    let temp_rule = layout::cabinet_type(c, &cab.cabinet_type)?.map(|t| TempRule {
        min_c: t.temp_min_c,
        max_c: t.temp_max_c,
        alert_after_ms: t.temp_alert_after_s.saturating_mul(1000),
    });
    Ok(Setup {
        status: cab.status,
        versions: Versions {
            config: cab.config_version,
            config_acked: cab.config_acked_version,
            tags: cab.tags_version,
            tags_acked: cab.tags_acked_version,
        },
        lanes,
        temp_rule,
        position: cab.lat.zip(cab.lng),
        channels: layout::channels_of(c, &cab.cabinet_type)?,
    })
}

/// Everything an actor starts from, read in one trip to the database (at a login storm every
/// cabinet's actor starts at once).
struct Started {
    loaded: Loaded,
    setup: Setup,
    temp_alert: bool,
    /// This node already owns the cabinet (an earlier actor here crashed): its epoch, and the
    /// session that actor was in the middle of.
    owned: Option<(u64, Option<Resume>)>,
}

/// A door session to take up.
enum Resume {
    /// With what was cached at the authorisation (the door's weights before), if anything.
    Purchase(crate::db::models::Session, Box<crate::db::models::Order>, Option<String>),
    /// A restock or maintenance.
    Door(crate::db::models::Session),
}

/// At actor start: the cabinet row, its setup, and whether a temperature alert is open. When this
/// node already owns the cabinet (the actor before this one crashed), also what that actor left.
async fn start_up(svc: Shared, sn: String) -> Result<Option<Started>, SessionError> {
    let owned = sn.clone();
    let read = svc
        .db
        .run(move |c| {
            let Some(cab) = cabinets::find(c, &owned)? else { return Ok::<_, DbError>(None) };
            let filter = alerts::AlertFilter {
                code: Some(AlertCode::TemperatureOutOfRange),
                sn: Some(owned.clone()),
                open_only: true,
            };
            let temp_alert = !alerts::list(c, &filter, 1)?.is_empty();
            let (sealed, last_boot, liveness) = (cab.frame_key_sealed.clone(), cab.last_boot, cab.liveness);
            let setup = read_setup(c, cab)?;
            Ok(Some((sealed, last_boot, liveness, setup, temp_alert)))
        })
        .await?;
    let Some((sealed, last_boot, liveness, setup, temp_alert)) = read else { return Ok(None) };
    let loaded = Loaded { key: svc.seal.unseal(&sealed)?, last_boot: u64::try_from(last_boot).unwrap_or(0), liveness };
    let owned = match svc.ownership.epoch(&sn) {
        Some(epoch) => Some((epoch, to_resume(&svc, &owned_db(&svc, &sn, epoch), &sn).await?)),
        None => None,
    };
    Ok(Some(Started { loaded, setup, temp_alert, owned }))
}

/// What the cabinet's new owner takes up: the open session, whichever node or actor opened it,
/// and its pending commands. A purchase, restock or maintenance is resumed, not dropped: someone
/// may be at the open door, and what they take or put in must be counted. Anything else (a
/// delivery, a calibration) was its old actor's to finish, and is ended as abandoned, with its
/// commands.
async fn to_resume(svc: &Shared, db: &crate::db::Db, sn: &str) -> Result<Option<Resume>, SessionError> {
    let owned = sn.to_string();
    let (open, order, pending) = db
        .run(move |c| {
            let open = sessions::current(c, &owned)?;
            let order = match &open {
                Some(s) if s.kind == crate::domain::session::SessionKind::Purchase => db::orders::for_session(c, s.id)?,
                _ => None,
            };
            Ok::<_, DbError>((open, order, command_rows::has_pending(c, &owned)?))
        })
        .await?;
    let resume = match (&open, order) {
        (Some(s), Some(o)) if !o.status.is_final() => {
            let cached = svc.cache.order_get(o.id).await.unwrap_or_else(|e| {
                tracing::warn!(%sn, order = o.id, error = %e, "cached order not read");
                None
            });
            Some(Resume::Purchase(s.clone(), Box::new(o), cached))
        }
        (Some(s), _)
            if matches!(
                s.kind,
                crate::domain::session::SessionKind::Restock | crate::domain::session::SessionKind::Maintenance
            ) =>
        {
            Some(Resume::Door(s.clone()))
        }
        _ => None,
    };
    let stale = open.filter(|_| resume.is_none());
    // Reads first: at a login storm most actors find nothing to clean, and write nothing.
    if stale.is_some() || pending {
        if let Some(s) = &stale {
            tracing::warn!(%sn, session = s.id, kind = %s.kind, node = %s.node_id, "closing a session its actor left open");
        }
        crate::flows::sessions::abandon(db, sn.to_string(), stale.map(|s| s.id)).await?;
    }
    Ok(resume)
}

impl Actor for CabinetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Frames that arrive while loading wait in the mailbox: `wait` holds them back.
        ctx.wait(start_up(self.svc.clone(), self.sn.to_string()).into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(Some(Started { loaded, setup, temp_alert, owned })) => {
                    act.key = loaded.key;
                    act.last_boot = loaded.last_boot;
                    act.liveness = loaded.liveness;
                    act.state = State::AwaitingLogin;
                    act.temp_watch = TempWatch::new(temp_alert);
                    act.apply_setup(setup);
                    if let Some((epoch, resume)) = owned {
                        act.svc.ownership.adopt(act.sn.as_str(), epoch, ctx.address().recipient());
                        act.own(epoch);
                        act.resume(resume, ctx);
                    }
                    if act.restarted {
                        tracing::warn!(sn = %act.sn, "cabinet actor restarted; asking the cabinet to log in again");
                        act.request_login();
                    }
                }
                Ok(None) => {
                    act.state = State::Unknown;
                    act.notice.on_purpose = true;
                    ctx.run_later(UNKNOWN_TTL, |_, ctx| ctx.stop());
                }
                Err(e) => {
                    // Leave it to the next frame: the registry starts a fresh actor.
                    tracing::error!(sn = %act.sn, error = %e, "cabinet state could not be loaded");
                    act.notice.on_purpose = true;
                    ctx.stop();
                }
            }
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.fail_all_commands("the cabinet's actor stopped", ctx);
        self.notice.report();
    }
}

impl Handler<Inbound> for CabinetActor {
    type Result = ();

    fn handle(&mut self, f: Inbound, ctx: &mut Context<Self>) {
        let result = self.accept(&f, ctx);
        match result {
            Ok(ts) => {
                self.svc.metrics.accepted(f.kind);
                if let Some(ts) = ts {
                    // `ts` has millisecond resolution: take the publish as the middle of its
                    // millisecond, so the estimate is unbiased (±0.5 ms).
                    let age_us = chrono::Utc::now()
                        .timestamp_micros()
                        .saturating_sub(ts.saturating_mul(1000))
                        .saturating_sub(500);
                    if age_us < 3_600_000_000 {
                        self.svc.metrics.frame_latency.observe(age_us.max(0) as f64 / 1e6);
                    }
                }
            }
            Err(reason) => self.reject(reason, ctx),
        }
    }
}

/// Another node owns the cabinet now (its device logged in there), or the lease lapsed: whatever
/// this actor holds is the new owner's to finish, and its writes would be refused anyway. It
/// stops, and the cabinet's connection here, if any is left, is dropped so the device logs in
/// again wherever it lands.
impl Handler<LeaseLost> for CabinetActor {
    type Result = ();

    fn handle(&mut self, m: LeaseLost, ctx: &mut Context<Self>) {
        if self.epoch != Some(m.epoch) {
            return;
        }
        tracing::warn!(sn = %self.sn, epoch = m.epoch, "cabinet owned elsewhere now; its actor here stops");
        self.epoch = None;
        let (downlink, sn) = (self.svc.downlink.clone(), self.sn.to_string());
        actix::spawn(async move {
            if let Err(e) = downlink.kick(&sn).await {
                tracing::warn!(%sn, error = %e, "the cabinet's connection here could not be dropped");
            }
        });
        self.notice.on_purpose = true;
        ctx.stop();
    }
}

/// The watchdog changed this cabinet's liveness.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LivenessChanged(pub Liveness);

impl Handler<LivenessChanged> for CabinetActor {
    type Result = ();

    fn handle(&mut self, m: LivenessChanged, _ctx: &mut Context<Self>) {
        self.set_liveness(m.0);
    }
}

/// Fault injection for the supervision tests: the actor panics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

impl Handler<Crash> for CabinetActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _ctx: &mut Context<Self>) {
        panic!("cabinet actor {}: crash injected", self.sn);
    }
}

/// A snapshot of the actor's view, for tests and diagnostics.
#[derive(Message)]
#[rtype(result = "CabinetView")]
pub struct Inspect;

#[derive(Debug, Clone, PartialEq, MessageResponse)]
pub struct CabinetView {
    pub logged_in: bool,
    pub boot: Option<u64>,
    pub last_seq: Option<u64>,
    pub liveness: Liveness,
    pub session: Option<SessionInfo>,
    /// The course of a purchase, restock or maintenance session.
    pub door_session: Option<DoorView>,
    pub doors_open: Vec<u32>,
    pub lanes: Vec<LaneWeight>,
    pub pending_commands: usize,
}

impl Handler<Inspect> for CabinetActor {
    type Result = CabinetView;

    fn handle(&mut self, _: Inspect, _ctx: &mut Context<Self>) -> CabinetView {
        let (boot, last_seq) = match self.state {
            State::Session { boot, last_seq } => (Some(boot), Some(last_seq)),
            _ => (None, None),
        };
        CabinetView {
            logged_in: boot.is_some(),
            boot,
            last_seq,
            liveness: self.liveness,
            session: self.held.as_ref().map(|h| h.info().clone()),
            door_session: self.held.as_ref().and_then(Held::door).map(|r| r.view()),
            doors_open: self.doors.open.iter().copied().collect(),
            lanes: self.lane_weights(),
            pending_commands: self.pending.len(),
        }
    }
}
