//! `payment.refund`: give money back on a paid order, exactly once.
//!
//! The refund's number is fixed when the decision is written (`db::refunds::request`), and both
//! platforms take a repeat of it as the same refund, so a retry never gives back twice. A refund
//! that may have gone out before (`processing`) is asked about first. WeChat refunds finish on
//! their own time and call back (`REFUND.SUCCESS`); until one of the two says so, the refund is
//! looked at again in later rounds. A refusal or a refund the platform gives up on is `failed`,
//! with a critical alert: the shopper is owed money Heft could not return.

use async_trait::async_trait;

use super::{Gateways, PayError, RefundRequest, RefundState};
use crate::config::OrdersConfig;
use crate::db::refunds::{self, Ended};
use crate::db::{self, Db, DbError, orders, payments};
use crate::domain::payment::RefundStatus;
use crate::mq::topics::{self, Payload};
use crate::mq::{Handler, HandlerError, Message};

pub struct RefundHandler {
    pub db: Db,
    pub gateways: Gateways,
    /// Rounds are timed as the capture's (`orders.capture_retry_s`, doubling).
    pub orders: OrdersConfig,
    /// `messages.max_attempts`: an unreachable platform on the last attempt is a later round.
    pub max_attempts: u32,
}

#[async_trait]
impl Handler for RefundHandler {
    fn name(&self) -> &str {
        topics::Refund::TOPIC
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::Refund::TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let topics::Refund { out_refund_no: no, chain, round } = msg.decode()?;
        let next = Next { no: &no, chain: &chain, round };
        match self.refund(&next).await {
            Ok(()) => Ok(()),
            Err(PayError::Retryable(e)) if msg.attempts.saturating_add(1) >= self.max_attempts => {
                tracing::warn!(refund = %no, error = %e, "platform still unavailable; the refund is tried again later");
                self.note(&no, &e).await?;
                self.later(&next).await
            }
            Err(e) => {
                self.note(&no, &e.to_string()).await?;
                Err(HandlerError::Failed(format!("refund {no}: {e}")))
            }
        }
    }
}

impl RefundHandler {
    /// One attempt; `Err` only for what a retry may mend (or a person, once the message dies).
    async fn refund(&self, next: &Next<'_>) -> Result<(), PayError> {
        let no = next.no;
        let key = no.to_string();
        let found = self
            .db
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
            return Ok(());
        }
        let transaction_id = payment.transaction_id.clone().ok_or_else(|| {
            PayError::Permanent(format!("payment {} has no transaction to refund", payment.out_order_no))
        })?;
        let req = RefundRequest {
            out_refund_no: refund.out_refund_no.clone(),
            out_order_no: payment.out_order_no.clone(),
            out_trade_no: payment.out_trade_no.clone().unwrap_or_else(|| orders::out_trade_no(&payment.out_order_no)),
            transaction_id,
            paid_fen: order.paid_fen.unwrap_or(0),
            refund_fen: refund.amount_fen,
            reason: refund.reason.clone(),
        };
        let gateway = self.gateways.get(payment.channel);
        // Sent before (the answer may have been lost): the platform's word first.
        let mut state = if refund.status == RefundStatus::Processing {
            gateway.query_refund(&req).await?
        } else {
            RefundState::Unknown
        };
        if state == RefundState::Unknown {
            let key = no.to_string();
            let sent =
                self.db.write(move |c| refunds::mark_sent(c, &key, db::now())).await.map_err(PayError::permanent)?;
            if !sent {
                return Ok(());
            }
            state = match gateway.refund(&req).await {
                Ok(s) => s,
                Err(PayError::Declined { code, message }) => {
                    RefundState::Failed { reason: format!("refused: {code}: {message}") }
                }
                Err(e) => return Err(e),
            };
        }
        match state {
            RefundState::Succeeded { refund_id } => {
                tracing::info!(refund = %no, amount_fen = req.refund_fen, "refunded");
                self.end(no, Ended::Succeeded { refund_id }).await
            }
            RefundState::Failed { reason } => {
                tracing::error!(refund = %no, %reason, "refund failed");
                self.end(no, Ended::Failed { reason }).await
            }
            // On its way: the callback, or the next round, says how it ends.
            RefundState::Processing | RefundState::Unknown => {
                self.later(next).await.map_err(|e| PayError::Permanent(e.to_string()))
            }
        }
    }

    async fn end(&self, no: &str, how: Ended) -> Result<(), PayError> {
        let key = no.to_string();
        self.db.write(move |c| refunds::ended(c, &key, &how, db::now())).await.map(|_| ()).map_err(PayError::permanent)
    }

    async fn note(&self, no: &str, error: &str) -> Result<(), HandlerError> {
        let (key, error) = (no.to_string(), error.to_string());
        self.db.write(move |c| refunds::note_error(c, &key, &error, db::now())).await?;
        Ok(())
    }

    /// The next round of this refund, later; once per round number of its chain, so a message
    /// delivered twice does not start a second chain.
    async fn later(&self, next: &Next<'_>) -> Result<(), HandlerError> {
        let Next { no, chain, round } = *next;
        let later = super::capture::retry_in(&self.orders, round);
        let message = topics::Refund { out_refund_no: no.to_string(), chain: chain.to_string(), round: round + 1 };
        let key = format!("refund:{no}:{chain}:round:{}", round + 1);
        self.db.write(move |c| message.enqueue_once(c, &key, Some(db::now() + later))).await?;
        Ok(())
    }
}

/// Which round of which refund a handling is.
#[derive(Clone, Copy)]
struct Next<'a> {
    no: &'a str,
    chain: &'a str,
    round: u32,
}
