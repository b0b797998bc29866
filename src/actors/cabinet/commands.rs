//! Commands to the cabinet with acks: each gets a `cmd_id`, is retried on timeout a bounded
//! number of times (a new `seq` each time, the same `cmd_id`, so the cabinet executes it once),
//! and ends acked, failed (the cabinet said no) or timed out. The row in `commands` is written
//! before the first send and updated once at the end.

use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::CabinetActor;
use super::held::{CommandOutcome, Pending, Purpose};
use crate::device::messages::{AckUp, Command};
use crate::device::topic::DownKind;
use crate::domain::live::Change;
use crate::flows;

impl CabinetActor {
    /// Record and send a command; the outcome comes back to [`CabinetActor::command_done`]. A
    /// command that cannot be encoded fails at once (it is never sent as `null`).
    pub(super) fn issue<T: Serialize>(
        &mut self,
        kind: DownKind,
        cmd: &T,
        session_id: Option<i64>,
        purpose: Purpose,
        ctx: &mut Context<Self>,
    ) {
        let body = match serde_json::to_value(cmd) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(sn = %self.sn, kind = kind.as_str(), error = %e, "command not encoded; not sent");
                let outcome = CommandOutcome::Failed(format!("not encoded: {e}"));
                return self.command_done(purpose, session_id, outcome, ctx);
            }
        };
        let row = flows::commands::new_row(self.sn.as_str(), kind, &body, session_id);
        let id = row.id.clone();
        let db = self.db.clone();
        // `wait`: the row exists before the cabinet can ack, so the ack always finds it.
        ctx.wait(async move { flows::commands::record(&db, row).await }.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(()) => {
                    act.svc.live.publish(Change::Command { sn: act.sn.to_string(), cmd_id: id.clone() });
                    act.launch(&id, kind, body, session_id, purpose, ctx)
                }
                Err(e) => {
                    tracing::error!(sn = %act.sn, error = %e, "command not recorded; not sent");
                    let outcome = CommandOutcome::Failed(format!("not recorded: {e}"));
                    act.command_done(purpose, session_id, outcome, ctx);
                }
            },
        ));
    }

    /// Send a command whose row is already stored, and track it until it ends.
    pub(super) fn launch(
        &mut self,
        cmd_id: &str,
        kind: DownKind,
        body: serde_json::Value,
        session_id: Option<i64>,
        purpose: Purpose,
        ctx: &mut Context<Self>,
    ) {
        self.pending.insert(
            cmd_id.to_string(),
            Pending { kind, body, attempts: 0, session_id, purpose: Some(purpose), timer: None },
        );
        self.transmit(cmd_id, ctx);
    }

    /// Send (or send again) a pending command with the next seq, and arm its timeout.
    fn transmit(&mut self, cmd_id: &str, ctx: &mut Context<Self>) {
        let boot = self.session_boot();
        let seq = self.next_down_seq();
        let Some(p) = self.pending.get(cmd_id) else { return };
        // A calibrate command asking for many samples is given the time to take them.
        let samples = p.body.get("samples").and_then(|n| n.as_u64()).filter(|_| p.kind == DownKind::Calibrate);
        let extra = samples.unwrap_or(0).saturating_mul(self.svc.config.calibration.sample_ms);
        let timeout = Duration::from_millis(self.svc.config.protocol.command_timeout_ms.saturating_add(extra));
        let Some(p) = self.pending.get_mut(cmd_id) else { return };
        p.attempts += 1;
        let cmd = Command { boot: boot.unwrap_or(0), seq, cmd_id: cmd_id.to_string(), body: p.body.clone() };
        let kind = p.kind;
        let id = cmd_id.to_string();
        p.timer = Some(ctx.run_later(timeout, move |act, ctx| act.command_timed_out(&id, ctx)));
        // Not logged in: nothing is sent; the retries keep trying until the timeout runs out.
        if boot.is_some() {
            self.svc.metrics.commands_sent.with_label_values(&[kind.as_str()]).inc();
            self.send_down(kind, &cmd);
        }
    }

    fn command_timed_out(&mut self, cmd_id: &str, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.get(cmd_id) else { return };
        if p.attempts <= self.svc.config.protocol.command_retries {
            tracing::debug!(sn = %self.sn, cmd_id, attempts = p.attempts, "command not acked; sending again");
            self.transmit(cmd_id, ctx);
        } else {
            self.finish_command(cmd_id, CommandOutcome::TimedOut, ctx);
        }
    }

    /// An `up/ack` frame. Acks for unknown or finished commands (a late duplicate) are ignored.
    pub(super) fn on_ack(&mut self, ack: AckUp, ctx: &mut Context<Self>) {
        if !self.pending.contains_key(&ack.cmd_id) {
            tracing::debug!(sn = %self.sn, cmd_id = %ack.cmd_id, "ack for no pending command");
            return;
        }
        let outcome = if ack.ok {
            CommandOutcome::Acked(ack.result)
        } else {
            CommandOutcome::Failed(ack.error.unwrap_or_else(|| "refused by the cabinet".into()))
        };
        self.finish_command(&ack.cmd_id, outcome, ctx);
    }

    fn finish_command(&mut self, cmd_id: &str, outcome: CommandOutcome, ctx: &mut Context<Self>) {
        let Some(mut p) = self.pending.remove(cmd_id) else { return };
        if let Some(timer) = p.timer.take() {
            ctx.cancel_future(timer);
        }
        self.svc.metrics.commands_finished.with_label_values(&[p.kind.as_str(), outcome.status().as_str()]).inc();
        let (error, result) = match &outcome {
            CommandOutcome::Acked(r) => (None, r.as_ref().map(|v| v.to_string())),
            CommandOutcome::Failed(e) => (Some(e.clone()), None),
            CommandOutcome::TimedOut => (Some(format!("no ack after {} attempts", p.attempts)), None),
        };
        let finished = flows::commands::Finished {
            status: outcome.status(),
            attempts: i32::try_from(p.attempts).unwrap_or(i32::MAX),
            error,
            result,
        };
        let (db, sn, id) = (self.db.clone(), self.sn.to_string(), cmd_id.to_string());
        let live = self.svc.live.clone();
        ctx.spawn(
            async move {
                match flows::commands::finish(&db, id.clone(), finished).await {
                    Ok(()) => live.publish(Change::Command { sn, cmd_id: id }),
                    Err(e) => tracing::error!(%sn, cmd_id = %id, error = %e, "command outcome not recorded"),
                }
            }
            .into_actor(self),
        );
        if let Some(purpose) = p.purpose.take() {
            self.command_done(purpose, p.session_id, outcome, ctx);
        }
    }

    /// Pending commands can never be acked once the actor stops: fail them now, so any caller
    /// waiting on one gets an answer.
    pub(super) fn fail_all_commands(&mut self, why: &str, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            self.finish_command(&id, CommandOutcome::Failed(why.to_string()), ctx);
        }
    }
}
