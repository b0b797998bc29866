//! Sessions of the cabinet actor: configuration delivery, price-label delivery and calibration.
//! One at a time per cabinet: the actor's mailbox serialises requests on this node, and the
//! `sessions` table's unique index refuses a second open session from any node.

use std::time::Instant;

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use super::held::{Calib, CommandOutcome, Held, LaneStep, Purpose, SessionError, SessionInfo, StepReport};
use super::{CabinetActor, load_setup};
use crate::db;
use crate::db::models::{NewSession, Session};
use crate::device::messages::{CalibrateCmd, CalibrateResult, CalibrationStep, VersionResult};
use crate::device::topic::DownKind;
use crate::domain::calibration::{self, CalibrationError, CalibrationLimits, LaneSamples, SampleRule};
use crate::domain::liveness::Liveness;
use crate::domain::session::{Outcome, SessionKind};
use crate::domain::validation::FieldError;
use crate::flows;

/// A configuration was stored; `delivery` says whether it went to the cabinet now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigSaved {
    pub version: i64,
    /// `sent`, or `pending` when the cabinet is not logged in: it is sent at the next login.
    pub delivery: &'static str,
    pub session: Option<SessionInfo>,
    pub cmd_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub session: SessionInfo,
    pub cmd_id: String,
}

/// One calibration step from the cabinet's reading (its separate samples judged into `judged`,
/// when it sent them): what it found per lane, kept on `c` for the steps that follow, and — after
/// a verify that passed — the door's calibration to store. Verify allows, beyond its tolerance,
/// `coverage` standard uncertainties of what the three steps' noise left.
fn take_step(
    c: &mut Calib,
    step: CalibrationStep,
    standard_g: Option<f64>,
    lanes: &[String],
    reading: &CalibrateResult,
    judged: Option<&[LaneSamples]>,
    limits: &CalibrationLimits,
) -> Result<(Vec<LaneStep>, Option<flows::setup::DoorCalibration>), CalibrationError> {
    let counts = &reading.counts;
    let sems: Vec<f64> = match judged {
        Some(j) => j.iter().map(|s| s.sigma_counts / (s.readings.max(1) as f64).sqrt()).collect(),
        None => vec![0.0; lanes.len()],
    };
    let zero = c.zero.clone().unwrap_or_default();
    let lane_step = |i: usize, zero: Option<i64>, cpg: Option<f64>, grams: Option<f64>| LaneStep {
        code: lanes[i].clone(),
        counts: counts[i],
        zero_counts: zero,
        counts_per_g: cpg,
        grams,
    };
    let g = standard_g.unwrap_or(f64::NAN);
    match step {
        CalibrationStep::Tare => {
            let zero = calibration::tare(lanes, counts, reading.door_open)?;
            let steps = (0..lanes.len()).map(|i| lane_step(i, Some(zero[i]), None, None)).collect();
            c.zero = Some(zero);
            c.zero_sem = sems;
            c.counts_per_g = None;
            Ok((steps, None))
        }
        CalibrationStep::Span => {
            let cpg = calibration::span(lanes, &zero, counts, g, limits)?;
            let steps = (0..lanes.len()).map(|i| lane_step(i, Some(zero[i]), Some(cpg[i]), None)).collect();
            c.counts_per_g = Some(cpg);
            c.span_sem = sems;
            c.standard_g = standard_g;
            Ok((steps, None))
        }
        CalibrationStep::Verify => {
            let cpg = c.counts_per_g.clone().unwrap_or_default();
            let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
            let allowance: Vec<f64> = (0..lanes.len())
                .map(|i| {
                    let u = (at(&c.zero_sem, i).powi(2) + at(&c.span_sem, i).powi(2) + at(&sems, i).powi(2)).sqrt();
                    limits.coverage * u / cpg.get(i).copied().unwrap_or(f64::INFINITY)
                })
                .collect();
            let grams = calibration::verify(lanes, &zero, &cpg, counts, g, limits, &allowance)?;
            let rounded = |i: usize| Some((grams[i] * 10.0).round() / 10.0);
            let steps = (0..lanes.len()).map(|i| lane_step(i, Some(zero[i]), Some(cpg[i]), rounded(i))).collect();
            let cal = lanes.iter().enumerate().map(|(i, code)| (code.clone(), zero[i], cpg[i])).collect();
            c.noise_g = match judged {
                Some(j) => j.iter().zip(&cpg).map(|(s, g)| Some(s.sigma_counts / g)).collect(),
                None => Vec::new(),
            };
            Ok((steps, Some(cal)))
        }
    }
}

/// What a step's reading comes to once its samples are judged.
enum Judged {
    /// Use this reading (its counts the samples' means), with the samples' summaries if any.
    Use(CalibrateResult, Option<Vec<LaneSamples>>),
    /// Ask again for this many readings.
    More(u32),
    Refused(CalibrationError),
}

/// A reading with separate samples is judged lane by lane; one without (older firmware) is used
/// as the steady reading it is.
fn judge_reading(
    mut reading: CalibrateResult,
    lanes: &[String],
    gains: &[Option<f64>],
    rule: &SampleRule,
    asked_more: bool,
) -> Judged {
    if reading.samples.is_empty() {
        return Judged::Use(reading, None);
    }
    match calibration::judge_samples(lanes, &reading.samples, gains, rule, asked_more) {
        Ok(judged) => {
            reading.counts = judged.iter().map(|s| s.mean_counts.round() as i64).collect();
            Judged::Use(reading, Some(judged))
        }
        Err(Ok(n)) => Judged::More(n),
        Err(Err(e)) => Judged::Refused(e),
    }
}

fn limits(c: &crate::config::CalibrationConfig, coverage: f64) -> CalibrationLimits {
    CalibrationLimits {
        coverage,
        min_counts_per_g: c.min_counts_per_g,
        max_counts_per_g: c.max_counts_per_g,
        verify_tolerance_g: c.verify_tolerance_g,
        max_standard_g: c.max_standard_g,
    }
}

impl CabinetActor {
    pub(super) fn busy(&self) -> Result<(), SessionError> {
        match &self.held {
            Some(h) => Err(SessionError::Busy(h.info().clone())),
            None => Ok(()),
        }
    }

    pub(super) fn new_session(&self, kind: SessionKind, door: Option<u32>, by: &str) -> NewSession {
        NewSession {
            sn: self.sn.to_string(),
            kind,
            door: door.and_then(|d| i32::try_from(d).ok()),
            started_by: by.to_string(),
            node_id: self.svc.node_id().to_string(),
            started_at: db::now(),
            detail: None,
        }
    }

    /// Hold `held` from now on. Whatever rested on the lanes before may move: drift is judged
    /// afresh afterwards.
    pub(super) fn hold(&mut self, held: Held) {
        self.held = Some(held);
        self.reset_baselines();
        self.changed();
    }

    pub(super) fn hold_calibration(&mut self, s: &Session, door: u32, lanes: Vec<String>, channels: Vec<u32>) {
        self.hold(Held::Calibration(SessionInfo::from(s), Calib::new(door, lanes, channels)));
    }

    /// End the held session with `outcome`, then deliver whatever waits (config, labels).
    pub(super) fn end_session(&mut self, outcome: Outcome, detail: Option<String>, ctx: &mut Context<Self>) {
        self.end_session_then(outcome, detail, None, ctx);
    }

    /// [`Self::end_session`], telling `closed` once the end is stored.
    pub(super) fn end_session_then(
        &mut self,
        outcome: Outcome,
        detail: Option<String>,
        closed: Option<oneshot::Sender<()>>,
        ctx: &mut Context<Self>,
    ) {
        self.forget_order(ctx);
        let Some(held) = self.held.take() else { return };
        let info = held.info().clone();
        if let Held::Calibration(_, mut c) = held
            && let Some(tx) = c.waiting.take()
        {
            let _ = tx.send(Err(SessionError::NoSession("calibration")));
        }
        tracing::info!(sn = %self.sn, session = info.id, kind = %info.kind, outcome = outcome.as_str(), "session ended");
        let db = self.db.clone();
        let id = info.id;
        // `wait`: the next session must not start before this one is closed in the database.
        ctx.wait(async move { crate::flows::sessions::end(&db, id, outcome, detail).await }.into_actor(self).map(
            move |r, act, ctx| {
                match r {
                    Ok(_) => act.changed(),
                    Err(e) => tracing::error!(sn = %act.sn, session = id, error = %e, "session end not recorded"),
                }
                if let Some(tx) = closed {
                    let _ = tx.send(());
                }
                act.deliver_pending(ctx);
            },
        ));
    }

    /// With no session held and the cabinet logged in: send a configuration or labels the
    /// cabinet has not acknowledged yet.
    ///
    /// A version whose delivery failed is not tried again until the next login (or an operator
    /// asks): a cabinet that refuses or cannot answer must not be held by endless retries.
    pub(super) fn deliver_pending(&mut self, ctx: &mut Context<Self>) {
        if self.held.is_some() || self.session_boot().is_none() || self.liveness == Liveness::Offline {
            return;
        }
        let v = self.setup.versions;
        let failed = |kind, version| self.failed_deliveries.get(&kind) == Some(&version);
        if v.config > v.config_acked && !failed(SessionKind::Config, v.config) {
            self.start_delivery(SessionKind::Config, "system".into(), None, ctx);
        } else if v.tags > v.tags_acked && v.config > 0 && !failed(SessionKind::PriceChange, v.tags) {
            self.start_delivery(SessionKind::PriceChange, "system".into(), None, ctx);
        }
    }

    /// Open a delivery session and send its command. `reply` gets the outcome of the start.
    pub(super) fn start_delivery(
        &mut self,
        kind: SessionKind,
        by: String,
        reply: Option<oneshot::Sender<Result<Delivery, SessionError>>>,
        ctx: &mut Context<Self>,
    ) {
        // `sessions::open` treats an open session of this node as an orphan: never call it while
        // holding one.
        let refusal = match self.busy() {
            Err(busy) => Some(busy),
            Ok(()) if self.opening => Some(SessionError::Opening),
            Ok(()) => None,
        };
        if let Some(e) = refusal {
            if let Some(tx) = reply {
                let _ = tx.send(Err(e));
            }
            return;
        }
        self.opening = true;
        let new = self.new_session(kind, None, &by);
        let db = self.db.clone();
        ctx.wait(async move { flows::setup::open_delivery(&db, new, kind).await }.into_actor(self).map(
            move |r, act, ctx| {
                act.opening = false;
                let result = match r {
                    Ok(Ok(opened)) => Ok(act.begin_delivery(opened, kind, ctx)),
                    Ok(Err(held)) => Err(SessionError::Busy(SessionInfo::from(&held))),
                    Err(e) => Err(SessionError::from(e)),
                };
                if let Err(e) = &result {
                    tracing::warn!(sn = %act.sn, kind = kind.as_str(), error = %e, "delivery not started");
                }
                if let Some(tx) = reply {
                    let _ = tx.send(result);
                }
            },
        ));
    }

    /// Hold an opened delivery session and send its command.
    pub(super) fn begin_delivery(
        &mut self,
        o: flows::setup::Opened,
        kind: SessionKind,
        ctx: &mut Context<Self>,
    ) -> Delivery {
        self.hold(Held::Delivery(SessionInfo::from(&o.session)));
        let purpose = match kind {
            SessionKind::Config => Purpose::Config { version: o.version },
            _ => Purpose::Tags { version: o.version },
        };
        let cmd_id = o.command.id;
        self.launch(&cmd_id, flows::setup::delivery_kind(kind), o.body, Some(o.session.id), purpose, ctx);
        Delivery { session: SessionInfo::from(&o.session), cmd_id }
    }

    /// A command of a session finished.
    pub(super) fn command_done(
        &mut self,
        purpose: Purpose,
        session_id: Option<i64>,
        outcome: CommandOutcome,
        ctx: &mut Context<Self>,
    ) {
        let ours = session_id.is_some() && self.held.as_ref().map(Held::id) == session_id;
        match purpose {
            Purpose::Config { version } | Purpose::Tags { version } => {
                let is_config = matches!(purpose, Purpose::Config { .. });
                if !matches!(outcome, CommandOutcome::Acked(_)) {
                    let kind = if is_config { SessionKind::Config } else { SessionKind::PriceChange };
                    self.failed_deliveries.insert(kind, version);
                }
                match outcome {
                    CommandOutcome::Acked(result) => {
                        let acked = result
                            .and_then(|v| serde_json::from_value::<VersionResult>(v).ok())
                            .and_then(|v| i64::try_from(v.version).ok());
                        if acked != Some(version) {
                            self.end_if(
                                ours,
                                Outcome::Failed,
                                format!("ack carried version {acked:?}, not {version}"),
                                ctx,
                            );
                            return;
                        }
                        self.record_delivery(is_config, version, ours, ctx);
                    }
                    other => {
                        let why = match other {
                            CommandOutcome::Failed(e) => e,
                            _ => "no ack".into(),
                        };
                        self.end_if(ours, Outcome::Failed, why, ctx);
                    }
                }
            }
            Purpose::Calibrate { step, standard_g, lanes } => {
                if ours {
                    self.calibration_reading(step, standard_g, lanes, outcome, ctx);
                }
            }
            Purpose::Open { door } => self.open_done(door, session_id, outcome, ctx),
            // Only a quicker settlement rides on it: without it the readings still come, at the
            // closed cadence.
            Purpose::Weigh => {
                if !matches!(outcome, CommandOutcome::Acked(_)) {
                    tracing::warn!(sn = %self.sn, ?outcome, "weigh not carried out; waiting for the closed cadence");
                }
            }
        }
    }

    fn end_if(&mut self, ours: bool, outcome: Outcome, detail: String, ctx: &mut Context<Self>) {
        tracing::warn!(sn = %self.sn, %detail, "session command failed");
        if ours {
            self.end_session(outcome, Some(serde_json::json!({ "error": detail }).to_string()), ctx);
        }
    }

    /// The cabinet acknowledged a configuration or labels: store it, refresh the status, end.
    fn record_delivery(&mut self, is_config: bool, version: i64, ours: bool, ctx: &mut Context<Self>) {
        let (db, sn, node) = (self.db.clone(), self.sn.to_string(), self.svc.node_id().to_string());
        ctx.wait(
            async move { flows::setup::record_ack(&db, sn, node, is_config, version).await }.into_actor(self).map(
                move |r, act, ctx| {
                    match r {
                        Ok(flows::setup::Acked { current, status }) => {
                            // Not current: a newer version was saved meanwhile; it is still to deliver.
                            if current && is_config {
                                act.setup.versions.config_acked = act.setup.versions.config_acked.max(version);
                            } else if current {
                                act.setup.versions.tags_acked = act.setup.versions.tags_acked.max(version);
                            }
                            match status {
                                Some(status) => act.publish_status(status, ctx),
                                None => act.changed(),
                            }
                        }
                        Err(e) => tracing::error!(sn = %act.sn, error = %e, "ack not recorded"),
                    }
                    if ours {
                        act.end_session(Outcome::Done, None, ctx);
                    }
                },
            ),
        );
    }
}

impl CabinetActor {
    /// Start calibrating `door`: the cabinet must be logged in, configured (its current
    /// configuration acknowledged) and free.
    pub(super) fn start_calibration_checks(
        &mut self,
        door: u32,
        by: String,
    ) -> Result<(Vec<String>, Vec<u32>, NewSession), SessionError> {
        self.busy()?;
        if self.session_boot().is_none() || self.liveness == Liveness::Offline {
            return Err(SessionError::NotConnected);
        }
        let v = self.setup.versions;
        if v.config == 0 || v.config_acked != v.config {
            return Err(SessionError::NotConfigured(format!(
                "the cabinet has not acknowledged its configuration (version {}, acknowledged {})",
                v.config, v.config_acked
            )));
        }
        let (lanes, channels): (Vec<String>, Vec<u32>) = self
            .lanes
            .iter()
            .filter(|l| l.setup.door == door)
            .map(|l| (l.setup.code.clone(), u32::try_from(l.setup.channel).unwrap_or(u32::MAX)))
            .unzip();
        if lanes.is_empty() {
            return Err(SessionError::NotConfigured(format!("door {door} has no lanes")));
        }
        Ok((lanes, channels, self.new_session(SessionKind::Calibration, Some(door), &by)))
    }

    /// Send the calibrate command for `step`; the reading answers `tx`.
    pub(super) fn calibration_step_request(
        &mut self,
        step: CalibrationStep,
        standard_g: Option<f64>,
        tx: oneshot::Sender<Result<StepReport, SessionError>>,
        ctx: &mut Context<Self>,
    ) {
        let limits = limits(&self.svc.config.calibration, self.svc.config.weights.coverage);
        let Some(Held::Calibration(info, c)) = self.held.as_mut() else {
            let _ = tx.send(Err(SessionError::NoSession("calibration")));
            return;
        };
        let session_id = info.id;
        let problem = if c.waiting.is_some() {
            Some("a reading for this door is already being taken".to_string())
        } else if step == CalibrationStep::Span && c.zero.is_none() {
            Some("span needs a tare first: empty the lanes and call tare".to_string())
        } else if step == CalibrationStep::Verify && c.counts_per_g.is_none() {
            Some("verify needs a span first".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            let _ = tx.send(Err(SessionError::StepOrder(p)));
            return;
        }
        // A weight given is checked whatever the step (a tare does not use it, but one out of
        // range is a mistake to say, not to pass over).
        let given = standard_g.and_then(|g| calibration::check_standard(g, &limits).err());
        let standard_g = match step {
            CalibrationStep::Tare => None,
            CalibrationStep::Span => standard_g,
            CalibrationStep::Verify => standard_g.or(c.standard_g),
        };
        // The weight a verify falls back to was checked when its span gave it.
        let problem = match (given, standard_g) {
            (Some(e), _) => Some(("out_of_range", e.to_string())),
            (None, None) if step != CalibrationStep::Tare => {
                Some(("required", "the standard weight in grams is required for span and verify".to_string()))
            }
            _ => None,
        };
        if let Some((code, message)) = problem {
            let _ = tx.send(Err(SessionError::Invalid(vec![FieldError::new("standard_g", code, message)])));
            return;
        }
        c.last_step = Instant::now();
        c.waiting = Some(tx);
        let lanes = c.lanes.len();
        c.pooled.clear();
        let samples = self.svc.config.calibration.samples.min(self.samples_per_answer(lanes));
        self.send_calibrate(session_id, step, standard_g, samples, ctx);
    }

    /// Most samples of `lanes` lanes one calibrate answer carries within `mqtt.max_frame_bytes`
    /// (a raw count is at most 11 characters with its comma; half the frame is left for the rest).
    fn samples_per_answer(&self, lanes: usize) -> u32 {
        let per_sample = 11 * lanes.max(1) + 2;
        u32::try_from((self.svc.config.mqtt.max_frame_bytes / 2) / per_sample).unwrap_or(u32::MAX).max(2)
    }

    /// The calibrate command for the held session's door, asking for `samples` separate readings.
    fn send_calibrate(
        &mut self,
        session_id: i64,
        step: CalibrationStep,
        standard_g: Option<f64>,
        samples: u32,
        ctx: &mut Context<Self>,
    ) {
        let Some(Held::Calibration(_, c)) = self.held.as_ref() else { return };
        let cmd = CalibrateCmd { door: c.door, step, channels: c.channels.clone(), standard_g, samples: Some(samples) };
        let lanes = c.lanes.clone();
        self.issue(DownKind::Calibrate, &cmd, Some(session_id), Purpose::Calibrate { step, standard_g, lanes }, ctx);
    }

    /// The gain each lane's readings of `step` are judged with: the span being measured, the one
    /// the span found, or — for a tare — the lane's calibration from before, if it has one.
    fn judging_gains(
        &self,
        c: &Calib,
        step: CalibrationStep,
        standard_g: Option<f64>,
        counts: &[i64],
        limits: &CalibrationLimits,
    ) -> Vec<Option<f64>> {
        let zero = c.zero.clone().unwrap_or_default();
        (0..c.lanes.len())
            .map(|i| match step {
                CalibrationStep::Tare => {
                    let lane = self.lanes.iter().find(|l| l.setup.code == c.lanes[i]);
                    lane.and_then(|l| l.setup.cal).map(|cal| cal.counts_per_g)
                }
                // A gain the cell cannot have is the span step's to refuse (not moved, reversed).
                CalibrationStep::Span => Some((*counts.get(i)? - *zero.get(i)?) as f64 / standard_g?)
                    .filter(|g| (limits.min_counts_per_g..=limits.max_counts_per_g).contains(g)),
                CalibrationStep::Verify => c.counts_per_g.as_ref()?.get(i).copied(),
            })
            .collect()
    }

    /// The cabinet answered a calibrate command of the held session.
    fn calibration_reading(
        &mut self,
        step: CalibrationStep,
        standard_g: Option<f64>,
        lanes: Vec<String>,
        outcome: CommandOutcome,
        ctx: &mut Context<Self>,
    ) {
        let limits = limits(&self.svc.config.calibration, self.svc.config.weights.coverage);
        let rule = self.svc.config.calibration.sample_rule(&self.svc.config.weights);
        let gains = match (self.held.as_ref(), &outcome) {
            (Some(Held::Calibration(_, c)), CommandOutcome::Acked(Some(v))) => {
                let counts: Vec<i64> =
                    v.get("counts").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
                self.judging_gains(c, step, standard_g, &counts, &limits)
            }
            _ => Vec::new(),
        };
        let cap = self.samples_per_answer(lanes.len());
        let Some(Held::Calibration(info, c)) = self.held.as_mut() else { return };
        let session_id = info.id;
        let Some(tx) = c.waiting.take() else { return };
        let reading = match outcome {
            CommandOutcome::Acked(Some(v)) => serde_json::from_value::<CalibrateResult>(v)
                .map_err(|e| SessionError::Command(format!("unreadable calibration result: {e}"))),
            CommandOutcome::Acked(None) => Err(SessionError::Command("ack without a reading".into())),
            CommandOutcome::Failed(e) => Err(SessionError::Command(e)),
            CommandOutcome::TimedOut => Err(SessionError::Command("no answer from the cabinet".into())),
        };
        let reading = match reading {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let door = c.door;
        let mut reading = reading;
        c.pooled.append(&mut reading.samples);
        reading.samples = c.pooled.clone();
        let last = reading.samples.len() >= rule.max_samples as usize;
        let (reading, judged) = match judge_reading(reading, &lanes, &gains, &rule, last) {
            Judged::Use(reading, judged) => (reading, judged),
            Judged::More(n) => {
                // Too few readings for this cell's noise: ask for more, as many as one answer
                // carries, and pool them with these.
                let more = (n as usize).saturating_sub(c.pooled.len()).max(1) as u32;
                c.waiting = Some(tx);
                self.send_calibrate(session_id, step, standard_g, more.min(cap), ctx);
                return;
            }
            Judged::Refused(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        c.pooled.clear();
        match take_step(c, step, standard_g, &lanes, &reading, judged.as_deref(), &limits) {
            Ok((steps, None)) => {
                let report = StepReport {
                    session_id,
                    door,
                    step: step.as_str().into(),
                    lanes: steps,
                    done: false,
                    status: None,
                };
                let _ = tx.send(Ok(report));
            }
            Ok((steps, Some(cal))) => {
                let report =
                    StepReport { session_id, door, step: step.as_str().into(), lanes: steps, done: true, status: None };
                self.commit_calibration(cal, report, tx, ctx);
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        }
    }

    /// Store a verified calibration, refresh the status, end the session, answer the operator.
    /// `lane_health` rows carrying the noise the verify step measured, one per lane that has it.
    fn calibration_noise(&self, cal: &[(String, i64, f64)]) -> Vec<crate::db::lane_health::LaneHealth> {
        let Some(Held::Calibration(_, c)) = self.held.as_ref() else { return Vec::new() };
        let (now, day) = (db::now(), crate::domain::calendar::business_day(chrono::Utc::now()).to_string());
        cal.iter()
            .zip(&c.noise_g)
            .filter_map(|((lane, ..), noise)| {
                Some(crate::db::lane_health::LaneHealth {
                    sn: self.sn.to_string(),
                    lane: lane.clone(),
                    day: day.clone(),
                    noise_g: Some((*noise)?),
                    drift_g: 0.0,
                    moves: 0,
                    baseline_g: None,
                    updated_at: now,
                })
            })
            .collect()
    }

    fn commit_calibration(
        &mut self,
        cal: Vec<(String, i64, f64)>,
        report: StepReport,
        tx: oneshot::Sender<Result<StepReport, SessionError>>,
        ctx: &mut Context<Self>,
    ) {
        let (svc, sn, node) = (self.svc.clone(), self.sn.to_string(), self.svc.node_id().to_string());
        let db = self.db.clone();
        let noise = self.calibration_noise(&cal);
        ctx.wait(
            async move {
                let status = flows::setup::save_calibration(&db, sn.clone(), node, cal).await?;
                // The cells' noise as calibration measured it: what they are judged by until their
                // closed-door stream shows its own.
                if let Err(e) = flows::cabinet::record_lane_health(&db, noise).await {
                    tracing::warn!(%sn, error = %e, "calibration noise not recorded");
                }
                let setup = load_setup(&svc, &sn).await?;
                Ok::<_, SessionError>((status, setup, report))
            }
            .into_actor(self)
            .map(|r, act, ctx| match r {
                Ok(((changed, now), setup, mut report)) => {
                    act.apply_setup(setup);
                    if let Some(s) = changed {
                        act.publish_status(s, ctx);
                    }
                    report.status = now;
                    // Answer once the session's end is stored, so what the operator reads next agrees.
                    let (closed_tx, closed_rx) = oneshot::channel();
                    act.end_session_then(Outcome::Done, None, Some(closed_tx), ctx);
                    actix::spawn(async move {
                        let _ = closed_rx.await;
                        let _ = tx.send(Ok(report));
                    });
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }),
        );
    }
}
