//! Refunds: money given back on a paid order, exactly once.
//!
//! A refund is written with its `payment.refund` message in the transaction of the decision that
//! causes it (`flows::review`), under a number fixed then (`HO…R1`, `R2`…); both platforms take a
//! repeat of that number as the same refund, so a retry never gives back twice. A refund that may
//! have gone out before (`processing`) is asked about first. WeChat refunds finish on their own
//! time and call back (`REFUND.SUCCESS`); until one of the two says so, the refund is looked at
//! again in later rounds. A refusal, or a refund the platform gives up on, is `failed` with a
//! critical alert: the shopper is owed money Heft could not return.

use chrono::NaiveDateTime;

use super::{Ctx, Effects, alerts, secs};
use crate::db::models::{Order, Refund};
use crate::db::{self, AnyConnection, Db, DbError, DbResult, orders, payments, refunds, write_tx};
use crate::domain::alert;
use crate::domain::money::{self, Next, retry_delay_s};
use crate::domain::payment::{Channel, RefundStatus, out_trade_no};
use crate::domain::units::Fen;
use crate::mq::HandlerError;
use crate::mq::topics::{self, Payload};
use crate::pay::{PayError, RefundRequest, RefundState};

/// A refund of `amount_fen` on `order` and its `payment.refund` message, inside the caller's
/// transaction. Its number is the order's with `R` and a count, so it is the same whichever node
/// sends it, however often.
pub fn request_in(
    conn: &mut AnyConnection,
    order: &Order,
    case_id: Option<i64>,
    amount_fen: Fen,
    reason: &str,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<Refund> {
    let n = refunds::count_for_order(conn, order.id)?;
    let row = Refund {
        out_refund_no: format!("{}R{}", order.out_order_no, n + 1),
        order_id: order.id,
        out_order_no: order.out_order_no.clone(),
        case_id,
        amount_fen,
        reason: reason.to_string(),
        status: RefundStatus::Requested,
        refund_id: None,
        last_error: None,
        requested_by: by.to_string(),
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    refunds::insert(conn, &row)?;
    topics::Refund { out_refund_no: row.out_refund_no.clone(), chain: "0".into(), round: 0 }.enqueue(conn)?;
    Ok(row)
}

/// How a refund ended on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Succeeded { refund_id: String },
    Failed { reason: String },
}

/// Record how the refund ended, once (a repeat, from the callback and the consumer both, changes
/// nothing), inside the caller's transaction. A failure raises a critical alert. True when this
/// call ended it.
pub fn ended_in(conn: &mut AnyConnection, out_refund_no: &str, how: &Ended, now: NaiveDateTime) -> DbResult<bool> {
    write_tx(conn, |conn| {
        let ended = match how {
            Ended::Succeeded { refund_id } => refunds::succeed(conn, out_refund_no, refund_id, now)?,
            Ended::Failed { reason } => refunds::fail(conn, out_refund_no, reason, now)?,
        };
        if !ended {
            return Ok(false);
        }
        if let Ended::Failed { reason } = how
            && let Some(r) = refunds::find(conn, out_refund_no)?
        {
            let sn = orders::find(conn, r.order_id)?.map(|o| o.sn);
            let spec = alert::refund_failed(sn.as_deref(), out_refund_no, r.amount_fen, r.order_id, reason);
            alerts::raise_in(conn, &spec)?;
        }
        Ok(true)
    })
}

/// What a retry found.
#[derive(Debug, Clone)]
pub enum Retried {
    /// Sent again: `requested`, with a fresh `payment.refund`.
    Again(Refund),
    /// Not failed: nothing to send again.
    NotFailed(Refund),
    NotFound,
}

/// A failed refund sent again, under its own number (the platforms take it as the same refund).
/// The new message starts a chain of rounds of its own.
pub async fn retry(db: &Db, out_refund_no: String) -> DbResult<(Retried, Effects)> {
    db.write(move |c| {
        let now = db::now();
        if refunds::reopen(c, &out_refund_no, now)? {
            let chain = now.and_utc().timestamp_millis().to_string();
            topics::Refund { out_refund_no: out_refund_no.clone(), chain, round: 0 }.enqueue(c)?;
        }
        let found = refunds::find(c, &out_refund_no)?;
        Ok(match found {
            Some(r) if r.status == RefundStatus::Requested => (Retried::Again(r), Effects::wake()),
            Some(r) => (Retried::NotFailed(r), Effects::none()),
            None => (Retried::NotFound, Effects::none()),
        })
    })
    .await
}

/// `payment.refund`: one handling of one round. `last_attempt`: the message's backoff runs out
/// with this one, so a platform that cannot be reached is handed to a later round rather than
/// letting the message die.
pub async fn handle(ctx: &Ctx, msg: &topics::Refund, last_attempt: bool) -> Result<Effects, HandlerError> {
    let no = msg.out_refund_no.as_str();
    let e = match send(ctx, msg).await {
        Ok(effects) => return Ok(effects),
        Err(e) => e,
    };
    note(&ctx.db, no, &e.to_string()).await?;
    match money::next(e.failure(), last_attempt) {
        Next::Retry => Err(HandlerError::Failed(format!("refund {no}: {e}"))),
        Next::LaterRound => {
            tracing::warn!(refund = %no, error = %e, "platform still unavailable; the refund is tried again later");
            later(ctx, msg).await
        }
        Next::AlertAndLaterRound => {
            tracing::error!(refund = %no, error = %e, "refund keeps failing on our side; tried again later");
            stuck(&ctx.db, no, &e.to_string()).await?;
            later(ctx, msg).await
        }
        // The platform's own word: the refund has failed, with its alert.
        Next::Gone | Next::End => {
            let (key, how) = (no.to_string(), Ended::Failed { reason: e.to_string() });
            ctx.db.write(move |c| ended_in(c, &key, &how, db::now())).await?;
            Ok(Effects::none())
        }
    }
}

/// The alert for a refund our side keeps failing, naming its order.
async fn stuck(db: &Db, no: &str, error: &str) -> Result<(), DbError> {
    let (key, error) = (no.to_string(), error.to_string());
    db.write(move |c| {
        let Some(r) = refunds::find(c, &key)? else { return Ok(()) };
        let sn = orders::find(c, r.order_id)?.map(|o| o.sn);
        alerts::raise_in(c, &alert::payment_stuck(sn.as_deref(), r.order_id, &key, "refund", &error)).map(|_| ())
    })
    .await
}

/// One attempt; `Err` only for what a retry may mend (or a person, once the message dies).
async fn send(ctx: &Ctx, msg: &topics::Refund) -> Result<Effects, PayError> {
    let no = msg.out_refund_no.as_str();
    let Some((refund, channel, req)) = request(&ctx.db, no).await? else { return Ok(Effects::none()) };
    let gateway = ctx.payments.get(channel);
    // Sent before (the answer may have been lost): the platform's word first.
    let mut state = match refund.status {
        // A refusal to say is not a refusal to refund: followed, never ended on.
        RefundStatus::Processing => gateway.query_refund(&req).await.map_err(|e| match e {
            PayError::Declined { code, message } => PayError::Permanent(format!("refund query: {code}: {message}")),
            e => e,
        })?,
        _ => RefundState::Unknown,
    };
    if state == RefundState::Unknown {
        let key = no.to_string();
        let sent = ctx.db.write(move |c| refunds::mark_sent(c, &key, db::now())).await.map_err(PayError::permanent)?;
        if !sent {
            return Ok(Effects::none());
        }
        state = match gateway.refund(&req).await {
            Ok(s) => s,
            Err(PayError::Declined { code, message }) => {
                RefundState::Failed { reason: format!("refused: {code}: {message}") }
            }
            Err(e) => return Err(e),
        };
    }
    let how = match state {
        RefundState::Succeeded { refund_id } => {
            tracing::info!(refund = %no, amount_fen = %req.refund_fen, "refunded");
            Ended::Succeeded { refund_id }
        }
        RefundState::Failed { reason } => {
            tracing::error!(refund = %no, %reason, "refund failed");
            Ended::Failed { reason }
        }
        // On its way: the callback, or the next round, says how it ends.
        RefundState::Processing | RefundState::Unknown => {
            return later(ctx, msg).await.map_err(|e| PayError::Permanent(e.to_string()));
        }
    };
    let key = no.to_string();
    ctx.db.write(move |c| ended_in(c, &key, &how, db::now())).await.map_err(PayError::permanent)?;
    Ok(Effects::none())
}

/// The refund, still to be sent, with its platform and the request that sends it; `None` once it
/// has ended.
async fn request(db: &Db, no: &str) -> Result<Option<(Refund, Channel, RefundRequest)>, PayError> {
    let key = no.to_string();
    let found = db
        .run(move |c| {
            let Some(r) = refunds::find(c, &key)? else { return Ok::<_, DbError>(None) };
            let p = payments::find(c, &r.out_order_no)?;
            let o = orders::find(c, r.order_id)?;
            Ok(p.zip(o).map(|(p, o)| (r, p, o)))
        })
        .await
        .map_err(PayError::permanent)?;
    let Some((refund, payment, order)) = found else {
        return Err(PayError::Permanent(format!("refund {no}, its payment or its order not found")));
    };
    if !RefundStatus::OPEN.contains(&refund.status) {
        return Ok(None);
    }
    let transaction_id = payment
        .transaction_id
        .clone()
        .ok_or_else(|| PayError::Permanent(format!("payment {} has no transaction to refund", payment.out_order_no)))?;
    let req = RefundRequest {
        out_refund_no: refund.out_refund_no.clone(),
        out_order_no: payment.out_order_no.clone(),
        out_trade_no: payment.out_trade_no.clone().unwrap_or_else(|| out_trade_no(&payment.out_order_no)),
        transaction_id,
        paid_fen: order.paid_fen.unwrap_or_default(),
        refund_fen: refund.amount_fen,
        reason: refund.reason.clone(),
    };
    Ok(Some((refund, payment.channel, req)))
}

/// Why the last attempt did not finish it, for operators.
async fn note(db: &Db, no: &str, error: &str) -> Result<(), DbError> {
    let (key, error) = (no.to_string(), error.to_string());
    db.write(move |c| refunds::note_error(c, &key, &error, db::now())).await
}

/// The next round of this refund, later; once per round number of its chain, so a message
/// delivered twice does not start a second chain. Rounds are timed as the capture's
/// (`orders.capture_retry_s`, doubling).
async fn later(ctx: &Ctx, msg: &topics::Refund) -> Result<Effects, HandlerError> {
    let o = &ctx.config.orders;
    let wait = secs(retry_delay_s(o.capture_retry_s, o.capture_retry_max_s, msg.round));
    let next = topics::Refund { round: msg.round + 1, ..msg.clone() };
    let key = format!("refund:{}:{}:round:{}", next.out_refund_no, next.chain, next.round);
    ctx.db.write(move |c| next.enqueue_once(c, &key, Some(db::now() + wait))).await?;
    Ok(Effects::wake())
}
