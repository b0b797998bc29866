//! `payment.release`: give back whatever the platform holds for a pre-authorisation Heft cancelled
//! — an order that ended before its door opened, a basket that came to nothing, or a confirmation
//! that crossed the cancel (`flows::callbacks` stores it with the message in one transaction).
//! The platform is asked to cancel or unfreeze; done once it says nothing is held.
//!
//! A release holds a shopper's money, so it follows the rule of every money message
//! (`domain::money`): a platform that cannot be reached is tried again in later rounds for as long
//! as it takes; only the platform's own refusal ends it, with a `release_failed` alert naming the
//! order.

use super::{Ctx, Effects, alerts, secs};
use crate::db::{self, consumed, orders, payments, write_tx};
use crate::domain::alert;
use crate::domain::money::{self, Failure, Next};
use crate::mq::HandlerError;
use crate::mq::topics::{self, Payload};
use crate::pay::{PayError, PlatformState};

/// The name its handlings are recorded under (`consumed_messages`).
const NAME: &str = "payment.release";

/// `payment.release`: one handling. `last_attempt`: the message's backoff runs out with this one,
/// so a platform that cannot be reached is handed to a later round rather than letting it die.
pub async fn handle(
    ctx: &Ctx,
    message: &topics::Release,
    msg_id: &str,
    last_attempt: bool,
) -> Result<Effects, HandlerError> {
    let no = message.out_order_no.as_str();
    let e = match release(ctx, no).await {
        Ok(()) => return done(ctx, msg_id).await,
        Err(e) => e,
    };
    match money::next(e.failure(), last_attempt) {
        Next::Retry => Err(HandlerError::Failed(format!("releasing {no}: {e}"))),
        Next::LaterRound => {
            tracing::warn!(order = %no, error = %e, "platform still unavailable; the release is tried again later");
            later(ctx, message, msg_id, None).await
        }
        Next::AlertAndLaterRound => {
            tracing::error!(order = %no, error = %e, "release keeps failing on our side; tried again later");
            later(ctx, message, msg_id, Some(e.to_string())).await
        }
        // The platform has no such order (Alipay keeps none for a freeze never paid): nothing is
        // held.
        Next::Gone => done(ctx, msg_id).await,
        Next::End => {
            tracing::error!(order = %no, error = %e, "the platform refused to release the hold");
            let (key, reason, id) = (no.to_string(), e.to_string(), msg_id.to_string());
            ctx.db
                .write(move |c| {
                    write_tx(c, |c| {
                        if let Some(o) = orders::find_by_out_order_no(c, &key)? {
                            alerts::raise_in(c, &alert::release_failed(&o.sn, o.id, &key, &reason))?;
                        }
                        consumed::once(c, NAME, &id).map(|_| ())
                    })
                })
                .await?;
            Ok(Effects::none())
        }
    }
}

/// Ask the platform what it holds, and cancel it if anything.
async fn release(ctx: &Ctx, no: &str) -> Result<(), PayError> {
    let key = no.to_string();
    let payment = ctx
        .db
        .run(move |c| payments::find(c, &key))
        .await
        .map_err(PayError::permanent)?
        .ok_or_else(|| PayError::Permanent(format!("payment {no} not found")))?;
    let channel = payment.channel;
    let gateway = ctx.payments.get(channel);
    let held = match gateway.query(no, payment.out_trade_no.as_deref()).await {
        Ok(PlatformState::Cancelled) => None,
        Ok(PlatformState::Authorized { platform_order_id, .. }) => Some(platform_order_id),
        Ok(PlatformState::Pending) => Some(payment.platform_order_id.clone()),
        // Charged: a person must look (the anomaly alert says so); nothing to release here.
        Ok(PlatformState::Capturing { .. } | PlatformState::Paid { .. }) => None,
        Err(e) if e.failure() == Failure::NotFound => None,
        // A refusal to say is not a refusal to release: followed, never ended on.
        Err(PayError::Declined { code, message }) => {
            return Err(PayError::Permanent(format!("query: {code}: {message}")));
        }
        Err(e) => return Err(e),
    };
    if let Some(platform_order_id) = held {
        let reason = "cancelled before the shopper confirmed";
        gateway.cancel(no, platform_order_id.as_deref().or(payment.platform_order_id.as_deref()), reason).await?;
        tracing::info!(%channel, order = %no, "hold released");
    }
    Ok(())
}

async fn done(ctx: &Ctx, msg_id: &str) -> Result<Effects, HandlerError> {
    let id = msg_id.to_string();
    ctx.db.write(move |c| consumed::once(c, NAME, &id).map(|_| ())).await?;
    Ok(Effects::none())
}

/// The next round of this release, later (timed as the capture's rounds), once per round of its
/// chain; with `stuck`, the alert that our side keeps failing, naming the order.
async fn later(ctx: &Ctx, msg: &topics::Release, msg_id: &str, stuck: Option<String>) -> Result<Effects, HandlerError> {
    let o = &ctx.config.orders;
    let wait = secs(money::retry_delay_s(o.capture_retry_s, o.capture_retry_max_s, msg.round));
    let chain = msg.chain.clone().unwrap_or_else(|| msg_id.to_string());
    let next = topics::Release { out_order_no: msg.out_order_no.clone(), chain: Some(chain), round: msg.round + 1 };
    ctx.db
        .write(move |c| {
            write_tx(c, |c| {
                if let Some(error) = &stuck
                    && let Some(o) = orders::find_by_out_order_no(c, &next.out_order_no)?
                {
                    let spec = alert::payment_stuck(Some(&o.sn), o.id, &o.out_order_no, "release", error);
                    alerts::raise_in(c, &spec)?;
                }
                let key = format!(
                    "release:{}:{}:round:{}",
                    next.out_order_no,
                    next.chain.as_deref().unwrap_or(""),
                    next.round
                );
                next.enqueue_once(c, &key, Some(db::now() + wait)).map(|_| ())
            })
        })
        .await?;
    Ok(Effects::wake())
}
