//! `payment.release`: give back a hold the shopper confirmed after Heft had already cancelled
//! the pre-authorisation (the confirmation and the cancel crossed). The callback that finds this
//! is stored with the message in one transaction (`db::payments::record_callback`); this consumer
//! asks the platform to cancel or unfreeze, and is done once the platform says nothing is held.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Gateways, PayError, PlatformState};
use crate::db::{Db, consumed, payments};
use crate::mq::topics::{self, Payload};
use crate::mq::{Handler, HandlerError, Message};

/// A refusal that means "no such order" on either platform (WeChat `ORDER_NOT_EXIST` / 404,
/// Alipay `…NOT_EXIST`).
fn is_not_found(code: &str) -> bool {
    code.ends_with("NOT_EXIST") || code.ends_with("NOT_EXISTS") || code == "HTTP_404"
}

pub struct ReleaseHandler {
    pub db: Db,
    pub gateways: Gateways,
}

impl ReleaseHandler {
    pub fn handler(db: Db, gateways: Gateways) -> Arc<dyn Handler> {
        Arc::new(ReleaseHandler { db, gateways })
    }
}

const NAME: &str = "payment.release";

#[async_trait]
impl Handler for ReleaseHandler {
    fn name(&self) -> &str {
        NAME
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::Release::TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let no = msg.decode::<topics::Release>()?.out_order_no;
        let key = no.clone();
        let payment = self
            .db
            .run(move |c| payments::find(c, &key))
            .await?
            .ok_or_else(|| HandlerError::Failed(format!("payment {no} not found")))?;
        let channel = payment.channel;
        let gateway = self.gateways.get(channel);
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
            match gateway
                .cancel(&no, platform_order_id.as_deref().or(payment.platform_order_id.as_deref()), reason)
                .await
            {
                Ok(()) => tracing::info!(%channel, order = %no, "late confirmation released"),
                Err(e) => return Err(HandlerError::Failed(format!("releasing {no}: {e}"))),
            }
        }
        let id = msg.id.clone();
        self.db.write(move |c| consumed::once(c, NAME, &id).map(|_| ())).await?;
        Ok(())
    }
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
