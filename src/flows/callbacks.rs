//! Payment platform callbacks: verified (and for WeChat decrypted) by the channel's gateway, then
//! stored and applied in one transaction with the payment row locked, so two copies arriving at
//! once on two nodes cannot both apply: the second finds the event stored, or the state already
//! moved. What a callback does to the payment is `domain::payment::apply`'s verdict; what the
//! payment's new state does to its order follows it.

use chrono::NaiveDateTime;

use super::order::{self, Moved, OpenTimes};
use super::{Ctx, Effects, alerts, refund};
use crate::db::models::{NewPaymentEvent, Payment};
use crate::db::{self, AnyConnection, DbError, DbResult, orders, payments, refunds, write_tx};
use crate::domain::alert;
use crate::domain::order::OrderStatus;
use crate::domain::payment::{self, Channel, PaymentState, Reported, Verdict};
use crate::mq::topics::{Capture, Payload, Release};
use crate::pay::{CallbackError, CallbackHeaders, PayEvent};

/// What became of one callback.
#[derive(Debug, Clone)]
pub enum Received {
    /// The same platform event was received before: nothing done.
    Duplicate,
    /// About a payment Heft has no record of (yet): not stored, so the platform sends it again.
    UnknownPayment,
    /// Stored; the verdict says what it did, to the payment named (if any).
    Stored { verdict: Verdict, out_order_no: Option<String> },
}

/// Why a callback was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CallbackFail {
    /// Unsigned, forged or unreadable: nothing changes.
    #[error(transparent)]
    Refused(#[from] CallbackError),
    /// Not stored: the platform sends it again.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Verify a callback of `channel`, store it and apply it.
pub async fn receive(
    ctx: &Ctx,
    channel: Channel,
    headers: &CallbackHeaders,
    body: &[u8],
) -> Result<(Received, Effects), CallbackFail> {
    let event = ctx.payments.get(channel).parse_callback(headers, body)?;
    // Kept as evidence exactly as it came (both platforms send UTF-8 text).
    let raw = String::from_utf8_lossy(body).into_owned();
    let open = OpenTimes::of(&ctx.config.orders);
    let applied = ctx.db.write(move |c| store_and_apply(c, channel, &event, &raw, open, db::now())).await?;
    Ok(applied)
}

fn store_and_apply(
    conn: &mut AnyConnection,
    channel: Channel,
    event: &PayEvent,
    raw: &str,
    open: OpenTimes,
    now: NaiveDateTime,
) -> DbResult<(Received, Effects)> {
    write_tx(conn, |conn| {
        if payments::event_seen(conn, channel, &event.event_id)? {
            return Ok((Received::Duplicate, Effects::none()));
        }
        // A refund callback names the refund: its payment is the refund's.
        let refund_of = match &event.kind {
            Reported::Refund { out_refund_no, .. } => refunds::find(conn, out_refund_no)?.map(|r| r.out_order_no),
            _ => None,
        };
        let current = match refund_of.as_deref().or(event.out_order_no.as_deref()) {
            Some(no) => match payments::find_for_update(conn, channel, no)? {
                Some(p) => Some(p),
                None => return Ok((Received::UnknownPayment, Effects::none())),
            },
            None => None,
        };
        let verdict = match &current {
            Some(p) => payment::apply(p.state, p.transaction_id.as_deref(), &event.kind),
            None => Verdict::Ignored("about no payment"),
        };
        let stored = payments::insert_event(
            conn,
            &NewPaymentEvent {
                channel,
                event_id: &event.event_id,
                event_type: &event.event_type,
                out_order_no: event.out_order_no.as_deref(),
                resource: &event.resource,
                raw,
                outcome: verdict.outcome(),
                received_at: now,
            },
        );
        match stored {
            Ok(()) => {}
            // The same event stored by a concurrent request since our look.
            Err(e) if e.is_unique_violation() => return Ok((Received::Duplicate, Effects::none())),
            Err(e) => return Err(e),
        }
        let Some(p) = current else {
            return Ok((Received::Stored { verdict, out_order_no: None }, Effects::none()));
        };
        let effects = apply(conn, channel, &p, &verdict, &event.kind, open, now)?;
        Ok((Received::Stored { verdict, out_order_no: Some(p.out_order_no) }, effects))
    })
}

/// Carry out a verdict on payment `p`, and what it does to the order.
fn apply(
    conn: &mut AnyConnection,
    channel: Channel,
    p: &Payment,
    verdict: &Verdict,
    reported: &Reported,
    open: OpenTimes,
    now: NaiveDateTime,
) -> DbResult<Effects> {
    if let Verdict::Apply { to, changes } | Verdict::Anomaly { to, changes, .. } = verdict {
        payments::apply(conn, &p.out_order_no, *to, changes, now)?;
    }
    if let (Verdict::RefundEnded, Reported::Refund { out_refund_no, refund_id, succeeded, status }) =
        (verdict, reported)
    {
        let how = match (succeeded, refund_id) {
            (true, Some(id)) => Some(refund::Ended::Succeeded { refund_id: id.clone() }),
            // Succeeded, but without its number: the refund consumer's query records it.
            (true, None) => None,
            (false, _) => Some(refund::Ended::Failed { reason: format!("the platform says {status}") }),
        };
        if let Some(how) = how {
            refund::ended_in(conn, out_refund_no, &how, now)?;
        }
    }
    let mut effects = Effects::none();
    if *verdict == Verdict::ReleaseNeeded {
        Release::new(&p.out_order_no).enqueue(conn)?;
        effects = Effects::wake();
    }
    if let Verdict::Anomaly { reason, .. } = verdict {
        alerts::raise_in(conn, &alert::payment_anomaly(channel.as_str(), &p.out_order_no, reason))?;
    }
    Ok(effects.and(move_order(conn, &p.out_order_no, verdict, open, now)?))
}

/// What a payment's new state does to its order: authorised → the door opens; paid → `paid`.
/// A payment reported paid for an order whose charge had failed is not taken on the callback's
/// word alone: the capture runs again, which asks the platform first and keeps its answer.
fn move_order(
    conn: &mut AnyConnection,
    out_order_no: &str,
    verdict: &Verdict,
    open: OpenTimes,
    now: NaiveDateTime,
) -> DbResult<Effects> {
    let to = match verdict {
        Verdict::Apply { to, .. } | Verdict::Anomaly { to, .. } => *to,
        _ => return Ok(Effects::none()),
    };
    let Some(order) = orders::find_by_out_order_no(conn, out_order_no)? else { return Ok(Effects::none()) };
    let moved: Moved = match to {
        PaymentState::Authorized => order::authorize(conn, order.id, open, now)?,
        PaymentState::Paid if order.status == OrderStatus::PaymentFailed => {
            Capture { order_id: order.id, round: 0 }.enqueue(conn)?;
            return Ok(Effects::wake());
        }
        PaymentState::Paid => {
            let amount = payments::find(conn, out_order_no)?.and_then(|p| p.amount_fen).unwrap_or_default();
            order::paid(conn, order.id, amount, now)?
        }
        _ => return Ok(Effects::none()),
    };
    Ok(moved.effects())
}
