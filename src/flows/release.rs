//! `payment.release`: give back whatever the platform holds for a pre-authorisation Heft cancelled
//! — an order that ended before its door opened, a basket that came to nothing, or a confirmation
//! that crossed the cancel (`flows::callbacks` stores it with the message in one transaction).
//! The platform is asked to cancel or unfreeze; done once it says nothing is held.

use super::{Ctx, Effects};
use crate::db::{consumed, payments};
use crate::mq::HandlerError;
use crate::mq::topics;
use crate::pay::{PayError, PlatformState};

/// A refusal that means "no such order" on either platform (WeChat `ORDER_NOT_EXIST` / 404,
/// Alipay `…NOT_EXIST`).
fn is_not_found(code: &str) -> bool {
    code.ends_with("NOT_EXIST") || code.ends_with("NOT_EXISTS") || code == "HTTP_404"
}

/// The name its handlings are recorded under (`consumed_messages`).
const NAME: &str = "payment.release";

/// `payment.release`: one handling.
pub async fn handle(ctx: &Ctx, message: &topics::Release, msg_id: &str) -> Result<Effects, HandlerError> {
    let no = message.out_order_no.clone();
    let key = no.clone();
    let payment = ctx
        .db
        .run(move |c| payments::find(c, &key))
        .await?
        .ok_or_else(|| HandlerError::Failed(format!("payment {no} not found")))?;
    let channel = payment.channel;
    let gateway = ctx.payments.get(channel);
    let held = match gateway.query(&no, payment.out_trade_no.as_deref()).await {
        Ok(PlatformState::Cancelled) => None,
        Ok(PlatformState::Authorized { platform_order_id, .. }) => Some(platform_order_id),
        Ok(PlatformState::Pending) => Some(payment.platform_order_id.clone()),
        // Charged: a person must look (the anomaly alert says so); nothing to release here.
        Ok(PlatformState::Capturing { .. } | PlatformState::Paid { .. }) => None,
        // The platform has no such order (Alipay keeps none for a freeze never paid):
        // nothing is held. Any other refusal is retried: the hold may still be there.
        Err(PayError::Declined { code, .. }) if is_not_found(&code) => None,
        Err(e) => return Err(HandlerError::Failed(format!("querying {no}: {e}"))),
    };
    if let Some(platform_order_id) = held {
        let reason = "cancelled before the shopper confirmed";
        match gateway.cancel(&no, platform_order_id.as_deref().or(payment.platform_order_id.as_deref()), reason).await {
            Ok(()) => tracing::info!(%channel, order = %no, "late confirmation released"),
            Err(e) => return Err(HandlerError::Failed(format!("releasing {no}: {e}"))),
        }
    }
    let id = msg_id.to_string();
    ctx.db.write(move |c| consumed::once(c, NAME, &id).map(|_| ())).await?;
    Ok(Effects::none())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_not_found_means_nothing_is_held() {
        for code in ["ORDER_NOT_EXIST", "ACQ.TRADE_NOT_EXIST", "HTTP_404"] {
            assert!(super::is_not_found(code), "{code}");
        }
        for code in ["RULE_LIMIT", "NO_AUTH", "ACQ.SYSTEM_ERROR", "INVALID_ORDER_STATE"] {
            assert!(!super::is_not_found(code), "{code}");
        }
    }
}
