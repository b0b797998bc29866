//! What operators ask of a cabinet's actor (through the ops API): save a configuration, resend
//! labels, calibrate, end a session. Requests that start a session are atomic: the actor handles
//! nothing else until the session is open or refused.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::held::{Held, SessionError, SessionInfo, StepReport};
use super::session::{ConfigSaved, Delivery};
use super::{CabinetActor, State, load_setup};
use crate::db::DbError;
use crate::device::messages::CalibrationStep;
use crate::domain::layout::LayoutInput;
use crate::domain::session::{Outcome, SessionKind};
use crate::flows;
use crate::flows::setup::SaveFail;

/// Store a new configuration and deliver it.
#[derive(Message)]
#[rtype(result = "Result<ConfigSaved, SessionError>")]
pub struct SaveConfig {
    pub layout: LayoutInput,
    pub by: String,
}

impl Handler<SaveConfig> for CabinetActor {
    type Result = AtomicResponse<Self, Result<ConfigSaved, SessionError>>;

    fn handle(&mut self, m: SaveConfig, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_request().or_else(|| self.busy().err()) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(refusal))));
        }
        // Logged in: the delivery session opens in the same transaction as the save, so the
        // configuration cannot be stored without the cabinet being held for its delivery.
        let delivery = self.session_boot().map(|_| self.new_session(SessionKind::Config, None, &m.by));
        let (svc, sn, node) = (self.svc.clone(), self.sn.to_string(), self.svc.node_id().to_string());
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let saved = flows::setup::save_config(&db, sn.clone(), m.layout, node, delivery).await.map_err(
                    |e| match e {
                        SaveFail::NotFound(_) => SessionError::NotFound,
                        SaveFail::Invalid(fields) => SessionError::Invalid(fields),
                        SaveFail::Busy(held) => SessionError::Busy(SessionInfo::from(held.as_ref())),
                        SaveFail::Db(e) => e.into(),
                    },
                )?;
                // Committed: whatever happens now, the delivery below must start, or the session
                // just opened would hold the cabinet with nobody to end it.
                let setup = load_setup(&svc, &sn).await;
                Ok((saved, setup))
            }
            .into_actor(self)
            .map(|r: Result<_, SessionError>, act, ctx| {
                let (saved, setup) = r?;
                let version = saved.version;
                match setup {
                    Ok(setup) => act.apply_setup(setup),
                    Err(e) => {
                        tracing::error!(sn = %act.sn, error = %e, "configuration saved but not reloaded");
                        act.setup.versions.config = version;
                    }
                }
                act.publish_setup(ctx);
                match saved.delivery {
                    None => Ok(ConfigSaved { version, delivery: "pending", session: None, cmd_id: None }),
                    Some(opened) => {
                        let d = act.begin_delivery(opened, SessionKind::Config, ctx);
                        Ok(ConfigSaved { version, delivery: "sent", session: Some(d.session), cmd_id: Some(d.cmd_id) })
                    }
                }
            }),
        ))
    }
}

/// Send the shelf labels again (a price-change session).
#[derive(Message)]
#[rtype(result = "Result<Delivery, SessionError>")]
pub struct SendTags {
    pub by: String,
}

impl Handler<SendTags> for CabinetActor {
    type Result = ResponseFuture<Result<Delivery, SessionError>>;

    fn handle(&mut self, m: SendTags, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_request().or_else(|| self.busy().err()) {
            return Box::pin(async move { Err(refusal) });
        }
        if self.session_boot().is_none() {
            return Box::pin(async { Err(SessionError::NotConnected) });
        }
        let (tx, rx) = oneshot::channel();
        self.start_delivery(SessionKind::PriceChange, m.by, Some(tx), ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(SessionError::Stopped)) })
    }
}

/// Something the actor works from changed in the database (a product's name or price, the
/// cabinet type's temperature range): reload, and deliver new labels when the cabinet is free.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetupChanged;

impl Handler<SetupChanged> for CabinetActor {
    type Result = ();

    fn handle(&mut self, _: SetupChanged, ctx: &mut Context<Self>) {
        let (svc, sn) = (self.svc.clone(), self.sn.to_string());
        ctx.wait(async move { load_setup(&svc, &sn).await }.into_actor(self).map(|r, act, ctx| match r {
            Ok(setup) => {
                act.apply_setup(setup);
                act.deliver_pending(ctx);
            }
            Err(e) => tracing::warn!(sn = %act.sn, error = %e, "label change not loaded"),
        }));
    }
}

/// Start calibrating a door.
#[derive(Message)]
#[rtype(result = "Result<SessionInfo, SessionError>")]
pub struct StartCalibration {
    pub door: u32,
    pub by: String,
}

impl Handler<StartCalibration> for CabinetActor {
    type Result = AtomicResponse<Self, Result<SessionInfo, SessionError>>;

    fn handle(&mut self, m: StartCalibration, _ctx: &mut Context<Self>) -> Self::Result {
        let prepared = self.refuse_request().map_or_else(|| self.start_calibration_checks(m.door, m.by), Err);
        let (lanes, channels, new) = match prepared {
            Ok(p) => p,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let db = self.db.clone();
        let door = m.door;
        AtomicResponse::new(Box::pin(async move { crate::flows::sessions::open(&db, new).await }.into_actor(self).map(
            move |r: Result<_, DbError>, act, ctx| match r? {
                Ok(s) => {
                    act.hold_calibration(&s, door, lanes, channels);
                    let idle = Duration::from_secs(act.svc.config.calibration.idle_timeout_s);
                    act.arm_idle_check(s.id, idle, ctx);
                    Ok(SessionInfo::from(&s))
                }
                Err(held) => Err(SessionError::Busy(SessionInfo::from(&held))),
            },
        )))
    }
}

/// Take one calibration reading; answers when the cabinet has.
#[derive(Message)]
#[rtype(result = "Result<StepReport, SessionError>")]
pub struct CalibrateStep {
    pub step: CalibrationStep,
    pub standard_g: Option<f64>,
}

impl Handler<CalibrateStep> for CabinetActor {
    type Result = ResponseFuture<Result<StepReport, SessionError>>;

    fn handle(&mut self, m: CalibrateStep, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_request() {
            return Box::pin(async move { Err(refusal) });
        }
        let (tx, rx) = oneshot::channel();
        self.calibration_step_request(m.step, m.standard_g, tx, ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(SessionError::Stopped)) })
    }
}

/// End the held session: a calibration without storing anything, or a delivery the cabinet
/// does not acknowledge (its command may still be acked later; the ack is then only recorded).
#[derive(Message)]
#[rtype(result = "Result<SessionInfo, SessionError>")]
pub struct AbortSession {
    pub by: String,
}

impl Handler<AbortSession> for CabinetActor {
    type Result = ResponseFuture<Result<SessionInfo, SessionError>>;

    fn handle(&mut self, m: AbortSession, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(refusal) = self.refuse_request() {
            return Box::pin(async move { Err(refusal) });
        }
        let Some(held) = self.held.as_ref() else {
            return Box::pin(async { Err(SessionError::NoSession("open")) });
        };
        if held.kind() == SessionKind::Purchase {
            // A shopper may be at the door: the purchase ends with its order (timeouts, the
            // settlement, or review), never from here.
            return Box::pin(async { Err(SessionError::PurchaseHeld) });
        }
        let info = held.info().clone();
        let (tx, rx) = oneshot::channel();
        let detail = Some(serde_json::json!({ "by": m.by }).to_string());
        self.end_session_then(Outcome::Aborted, detail, Some(tx), ctx);
        // Answer once the end is stored, so what the operator reads next agrees.
        Box::pin(async move {
            let _ = rx.await;
            Ok(info)
        })
    }
}

impl CabinetActor {
    /// Requests an actor cannot serve at all.
    fn refuse_request(&self) -> Option<SessionError> {
        match self.state {
            State::Unknown => Some(SessionError::NotFound),
            State::Loading => Some(SessionError::Loading),
            _ => None,
        }
    }

    /// A calibration session nobody has touched for `calibration.idle_timeout_s` ends, freeing
    /// the cabinet. Armed when the session starts and re-armed for the time left after each step,
    /// so only cabinets being calibrated carry a timer.
    fn arm_idle_check(&mut self, session_id: i64, after: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(after, move |act, ctx| {
            let idle = Duration::from_secs(act.svc.config.calibration.idle_timeout_s);
            let Some(Held::Calibration(info, calib)) = act.held.as_ref() else { return };
            if info.id != session_id {
                return;
            }
            let waiting = calib.waiting.is_some();
            let left = idle.saturating_sub(calib.last_step.elapsed());
            if waiting || !left.is_zero() {
                // A reading is being taken, or a step came since: look again when it may be idle.
                act.arm_idle_check(session_id, left.max(Duration::from_secs(1)), ctx);
            } else {
                tracing::warn!(sn = %act.sn, "calibration session idle too long; ending it");
                act.end_session(Outcome::Expired, None, ctx);
            }
        });
    }
}
