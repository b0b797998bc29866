//! `payment.capture`: charge a settled order against its pre-authorisation (Pay Score complete /
//! Alipay `trade.pay` with the `auth_no`), exactly once.
//!
//! Never charge twice: the trade number is fixed per order (`domain::payment::out_trade_no`); one
//! handling at a time per order, on any node (a lease in the cache: a second message for the same
//! order, a duplicate delivery or a retry racing a callback, finds it held and comes back later);
//! each later round is scheduled once (`consumed` keys), so duplicates never multiply the rounds;
//! the payment is moved to `capturing` before the request goes out;
//! and whenever an earlier attempt may have reached the platform (a timeout, a retry, a charge
//! that failed before, a refusal) the platform is asked first and its answer kept.
//!
//! A refused charge leaves the order `payment_failed` with the amount as debt on the account, and
//! is tried again later. A charge the platform is still collecting (WeChat) is looked at again
//! later if its callback has not come; still collecting `orders.collect_grace_s` after the first
//! look, it becomes debt too (the shopper cannot shop again owing it), and is followed until the
//! platform says paid. "Later" starts at `orders.capture_retry_s` and doubles each round up to
//! `orders.capture_retry_max_s`. A platform (or cache) that cannot be reached is retried by the
//! message's own backoff and, when that runs out, again after the same rounds: an outage never
//! drops a charge.

use std::sync::Arc;

use super::{Ctx, Effects, alerts, order};
use crate::db::models::{Order, OrderLine, Payment};
use crate::db::{self, AnyConnection, DbError, orders, payments, write_tx};
use crate::domain::alert;
use crate::domain::money::{self, Failure, Next};
use crate::domain::order::OrderStatus;
use crate::domain::payment::{self, PaymentState, out_trade_no};
use crate::domain::units::Fen;
use crate::mq::HandlerError;
use crate::mq::topics::{self, Payload};
use crate::pay::{CaptureLine, CaptureOutcome, CaptureRequest, PayError, PaymentGateway, PlatformState};

/// Why one handling stopped short.
#[derive(Debug, thiserror::Error)]
enum CaptureError {
    /// The platform could not be reached or the payment moved meanwhile: try again.
    #[error("{0}")]
    Again(String),
    /// Our request or the platform's answer is wrong (a key, a signature, a parameter): retried,
    /// then followed in later rounds with an alert for a person (`domain::money`).
    #[error("{0}")]
    Broken(String),
    /// The platform does not know the order or its pre-authorisation any more.
    #[error("{0}")]
    Gone(String),
    /// The platform refused for good.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<PayError> for CaptureError {
    fn from(e: PayError) -> Self {
        match e.failure() {
            Failure::Unreachable => CaptureError::Again(e.to_string()),
            Failure::Broken => CaptureError::Broken(e.to_string()),
            Failure::NotFound => CaptureError::Gone(e.to_string()),
            Failure::Refused => CaptureError::Refused(e.to_string()),
        }
    }
}

/// Schedule round `round + 1` of the order's capture, `later`; once per round number, so two
/// handlings of one round (a message delivered twice, a retry beside a callback's capture) leave
/// one chain of rounds, not two. False when that round was scheduled already.
fn next_round(c: &mut AnyConnection, id: i64, round: u32, later: chrono::Duration) -> Result<bool, DbError> {
    let key = format!("order:{id}:round:{}", round + 1);
    topics::Capture { order_id: id, round: round + 1 }.enqueue_once(c, &key, Some(db::now() + later))
}

/// The wait before round `round + 1` (`domain::money::retry_delay_s` with the orders config).
fn retry_in(ctx: &Ctx, round: u32) -> chrono::Duration {
    let o = &ctx.config.orders;
    super::secs(money::retry_delay_s(o.capture_retry_s, o.capture_retry_max_s, round))
}

/// `payment.capture`: one handling. One at a time per order, on any node: a lease in the cache; a
/// handling that finds it held comes back once the lease is surely free. `last_attempt`: the
/// message's backoff runs out with this one, so a platform (or cache) that cannot be reached is
/// handed to a later round rather than letting the message die.
pub async fn handle(
    ctx: &Ctx,
    message: &topics::Capture,
    msg_id: &str,
    last_attempt: bool,
) -> Result<Effects, HandlerError> {
    let (id, round) = (message.order_id, message.round);
    let name = format!("capture:{id}");
    let owner = format!("{msg_id}:{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let ttl = ctx.config.messages.handler_timeout_ms.saturating_add(5_000);
    let capture = Capture { ctx };
    let result = match ctx.cache.lease_acquire(&name, &owner, ttl).await {
        Err(e) => Err(CaptureError::Again(format!("capture lease of order {id}: {e}"))),
        Ok(None) => {
            // Another handling of this order is under way (or one that was stopped holds the
            // lease until it lapses): this one comes back once the lease is surely free, and then
            // finds the order as that handling left it.
            tracing::info!(order = id, message = %msg_id, "a capture of this order is already running; looking again later");
            let at = db::now() + chrono::Duration::milliseconds(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
            let again = message.clone();
            ctx.db.write(move |c| again.enqueue_at(c, Some(at))).await?;
            return Ok(Effects::wake());
        }
        Ok(Some(lease)) => {
            let result = capture.capture(id, round).await;
            if let Err(e) = ctx.cache.lease_release(&lease).await {
                tracing::warn!(order = id, error = %e, "capture lease not released; it expires");
            }
            result
        }
    };
    let (failure, error) = match result {
        Ok(()) => return Ok(Effects::order_changed(id)),
        Err(CaptureError::Db(e)) => return Err(e.into()),
        Err(CaptureError::Again(e)) => (Failure::Unreachable, e),
        Err(CaptureError::Broken(e)) => (Failure::Broken, e),
        // The handling ends these itself, knowing the order; one that got here is not understood.
        Err(CaptureError::Gone(e) | CaptureError::Refused(e)) => (Failure::Broken, e),
    };
    match money::next(failure, last_attempt) {
        Next::Retry => Err(HandlerError::Failed(error)),
        // Still out on the message's last attempt: a later round, so an outage never drops a
        // charge; our own side broken, the same, with an alert naming the order.
        next => {
            let (later, e) = (retry_in(ctx, round), error);
            let alert = next == Next::AlertAndLaterRound;
            tracing::warn!(order = id, error = %e, retry_in_s = later.num_seconds(), "the charge is tried again later");
            ctx.db
                .write(move |c| {
                    write_tx(c, |c| {
                        if alert && let Some(o) = orders::find(c, id)? {
                            let spec = alert::payment_stuck(Some(&o.sn), id, &o.out_order_no, "charge", &e);
                            alerts::raise_in(c, &spec)?;
                        }
                        next_round(c, id, round, later).map(|_| ())
                    })
                })
                .await?;
            Ok(Effects::order_changed(id))
        }
    }
}

/// One handling's work, with what it needs.
struct Capture<'a> {
    ctx: &'a Ctx,
}

impl Capture<'_> {
    async fn capture(&self, id: i64, round: u32) -> Result<(), CaptureError> {
        let (order, payment, lines) = self
            .ctx
            .db
            .run(move |c| {
                let Some(o) = orders::find(c, id)? else { return Ok::<_, DbError>(None) };
                let p = payments::find(c, &o.out_order_no)?;
                let lines = orders::lines(c, id)?;
                Ok(p.map(|p| (o, p, lines)))
            })
            .await?
            .ok_or_else(|| CaptureError::Broken(format!("order {id} or its payment not found")))?;
        let status = order.status;
        if !matches!(status, OrderStatus::Paying | OrderStatus::PaymentFailed) {
            return Ok(());
        }
        match self.charge(&order, &payment, &lines, round).await {
            Err(CaptureError::Gone(e)) => {
                tracing::warn!(order = id, error = %e, "the platform does not know the order or its pre-authorisation");
                self.gone(&order, status).await
            }
            Err(CaptureError::Refused(e)) => {
                tracing::warn!(order = id, error = %e, "the platform refused; owed until a later round is paid");
                self.failed(id, status, round).await
            }
            other => other,
        }
    }

    /// Charge the order, or follow where an earlier attempt left it.
    async fn charge(
        &self,
        order: &Order,
        payment: &Payment,
        lines: &[OrderLine],
        round: u32,
    ) -> Result<(), CaptureError> {
        let (id, status) = (order.id, order.status);
        let gateway = self.ctx.payments.get(payment.channel);
        let trade_no = out_trade_no(&order.out_order_no);
        let state = payment.state;
        // An earlier attempt may have reached the platform: its answer decides.
        let tried = payment.out_trade_no.is_some() || status == OrderStatus::PaymentFailed;
        if (state == PaymentState::Paid || tried) && self.follow_platform(gateway, order, status, round).await? {
            return Ok(());
        }
        // The platform charges at most what it holds; a basket over the cap is charged as one
        // capped line, the rest owed (booked at the settlement).
        let total = payment::charge_fen(order.total_fen.unwrap_or_default(), order.cap_fen);
        let lines = if total < order.total_fen.unwrap_or_default() {
            vec![CaptureLine { name: self.ctx.config.orders.title.clone(), unit_fen: total, count: 1 }]
        } else {
            lines
                .iter()
                .map(|l| CaptureLine { name: l.product_name.clone(), unit_fen: l.unit_fen, count: l.qty })
                .collect()
        };
        let req = CaptureRequest {
            out_order_no: order.out_order_no.clone(),
            out_trade_no: trade_no.clone(),
            platform_order_id: payment.platform_order_id.clone(),
            payer_id: payment.payer_id.clone(),
            lines,
            total_fen: total,
            title: self.ctx.config.orders.title.clone(),
        };
        self.mark_capturing(payment, &trade_no).await?;
        match gateway.capture(&req).await {
            Ok(CaptureOutcome::Paid { transaction_id }) => self.record_paid(order, total, transaction_id).await,
            Ok(CaptureOutcome::Collecting) => self.collecting(order, status, round).await,
            Err(PayError::Declined { code, message }) => {
                // A refusal may be of a repeat whose first went through: ask before blaming the
                // shopper.
                tracing::warn!(order = id, %code, %message, "charge refused; asking the platform");
                if self.follow_platform(gateway, order, status, round).await? {
                    return Ok(());
                }
                let no = order.out_order_no.clone();
                self.ctx
                    .db
                    .write(move |c| {
                        payments::set_state(
                            c,
                            &no,
                            &[PaymentState::Capturing],
                            PaymentState::Authorized,
                            None,
                            db::now(),
                        )
                    })
                    .await?;
                self.failed(id, status, round).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ask the platform where the charge stands and act on its answer; false when it still holds
    /// the pre-authorisation uncharged (the charge is to be made).
    async fn follow_platform(
        &self,
        gateway: &Arc<dyn PaymentGateway>,
        order: &Order,
        status: OrderStatus,
        round: u32,
    ) -> Result<bool, CaptureError> {
        let trade_no = out_trade_no(&order.out_order_no);
        match gateway.query(&order.out_order_no, Some(&trade_no)).await? {
            PlatformState::Paid { amount_fen, transaction_id } => {
                self.record_paid(order, amount_fen, transaction_id).await?;
            }
            PlatformState::Capturing { .. } => self.collecting(order, status, round).await?,
            PlatformState::Authorized { .. } => return Ok(false),
            PlatformState::Pending | PlatformState::Cancelled => self.gone(order, status).await?,
        }
        Ok(true)
    }

    /// The payment goes to `capturing` with its trade number before the request leaves; a
    /// payment no longer authorised (a callback moved it meanwhile) is looked at afresh.
    async fn mark_capturing(&self, payment: &Payment, trade_no: &str) -> Result<(), CaptureError> {
        let (no, trade) = (payment.out_order_no.clone(), trade_no.to_string());
        let marked = self
            .ctx
            .db
            .write(move |c| {
                payments::set_state(
                    c,
                    &no,
                    &[PaymentState::Authorized, PaymentState::Capturing],
                    PaymentState::Capturing,
                    Some(&trade),
                    db::now(),
                )
            })
            .await?;
        match marked {
            true => Ok(()),
            false => {
                Err(CaptureError::Again(format!("payment {} moved meanwhile; looking again", payment.out_order_no)))
            }
        }
    }

    async fn record_paid(&self, order: &Order, amount_fen: Fen, transaction_id: String) -> Result<(), CaptureError> {
        let (id, no) = (order.id, order.out_order_no.clone());
        self.ctx
            .db
            .write(move |c| {
                write_tx(c, |c| {
                    payments::record_paid(c, &no, amount_fen, &transaction_id, db::now())?;
                    order::paid(c, id, amount_fen, db::now())
                })
            })
            .await?;
        tracing::info!(order = id, %amount_fen, "paid");
        Ok(())
    }

    /// `payment_failed` (debt on the account) and the next round later; a repeat failure only
    /// schedules the next round.
    async fn failed(&self, id: i64, status: OrderStatus, round: u32) -> Result<(), CaptureError> {
        let later = retry_in(self.ctx, round);
        self.ctx
            .db
            .write(move |c| {
                write_tx(c, |c| {
                    if status != OrderStatus::PaymentFailed {
                        order::payment_failed(c, id, db::now())?;
                    }
                    next_round(c, id, round, later).map(|_| ())
                })
            })
            .await?;
        Ok(())
    }

    /// The platform is collecting: its callback finishes the order; if it never comes, look
    /// again. Still collecting `collect_grace_s` after the rounds began (counted in the rounds'
    /// waits, so a late review or an outage before the charge does not count), the amount becomes
    /// debt.
    async fn collecting(&self, order: &Order, status: OrderStatus, round: u32) -> Result<(), CaptureError> {
        let o = &self.ctx.config.orders;
        let overdue = payment::collecting_overdue(o.capture_retry_s, o.capture_retry_max_s, o.collect_grace_s, round);
        if status == OrderStatus::Paying && overdue {
            tracing::warn!(order = order.id, "charge not collected in time; owed until the platform collects it");
            return self.failed(order.id, status, round).await;
        }
        let (id, later) = (order.id, retry_in(self.ctx, round));
        self.ctx.db.write(move |c| next_round(c, id, round, later).map(|_| ())).await?;
        Ok(())
    }

    /// The pre-authorisation is gone (cancelled or expired) and nothing was charged: nothing can
    /// be charged any more. The amount stays as debt and a person follows it up; no more rounds.
    async fn gone(&self, order: &Order, status: OrderStatus) -> Result<(), CaptureError> {
        tracing::error!(order = order.id, "the pre-authorisation is gone; the charge cannot be made");
        let owed = payment::charge_fen(order.total_fen.unwrap_or_default(), order.cap_fen);
        let spec = alert::preauth_gone(&order.sn, order.id, &order.out_order_no, owed);
        let id = order.id;
        self.ctx
            .db
            .write(move |c| {
                write_tx(c, |c| {
                    if status == OrderStatus::Paying {
                        order::payment_failed(c, id, db::now())?;
                    }
                    alerts::raise_in(c, &spec).map(|_| ())
                })
            })
            .await?;
        Ok(())
    }
}
