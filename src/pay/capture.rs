//! `payment.capture`: charge a settled order against its pre-authorisation (Pay Score complete /
//! Alipay `trade.pay` with the `auth_no`), exactly once.
//!
//! Never charge twice: the trade number is fixed per order (`db::orders::out_trade_no`), the
//! payment is moved to `capturing` before the request goes out, and whenever an earlier attempt
//! may have reached the platform (a timeout, a retry, a charge that failed before) the platform is
//! asked first and its answer kept. A refused charge leaves the order `payment_failed` with the
//! amount as debt on the account, and is tried again after `orders.capture_retry_s`; a charge
//! still being collected (WeChat) is looked at again after the same time if its callback has not
//! come.

use async_trait::async_trait;

use super::{CaptureLine, CaptureOutcome, CaptureRequest, Channel, Gateways, PayError, PlatformState};
use crate::config::OrdersConfig;
use crate::db::models::{Order, Payment};
use crate::db::{self, Db, DbError, orders, outbox, payments};
use crate::domain::order::OrderStatus;
use crate::domain::payment::PaymentState;
use crate::mq::{Handler, HandlerError, Message, topics};

pub struct Capture {
    pub db: Db,
    pub gateways: Gateways,
    pub orders: OrdersConfig,
    pub title: String,
}

fn retry_in(o: &OrdersConfig) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(o.capture_retry_s).unwrap_or(300))
}

#[async_trait]
impl Handler for Capture {
    fn name(&self) -> &str {
        topics::PAYMENT_CAPTURE
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::PAYMENT_CAPTURE.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let id = msg.payload["order_id"]
            .as_i64()
            .ok_or_else(|| HandlerError::Failed(format!("payment.capture {} without order_id", msg.id)))?;
        let (order, payment, lines) = self
            .db
            .run(move |c| {
                let Some(o) = orders::find(c, id)? else { return Ok::<_, DbError>(None) };
                let p = payments::find(c, &o.out_order_no)?;
                let lines = orders::lines(c, id)?;
                Ok(p.map(|p| (o, p, lines)))
            })
            .await?
            .ok_or_else(|| HandlerError::Failed(format!("order {id} or its payment not found")))?;
        let status = orders::status_of(&order)?;
        if !matches!(status, OrderStatus::Paying | OrderStatus::PaymentFailed) {
            return Ok(());
        }
        let channel = Channel::parse(&payment.channel).ok_or_else(|| {
            HandlerError::Failed(format!("payment {} channel {}", payment.out_order_no, payment.channel))
        })?;
        let gateway = self.gateways.get(channel);
        let trade_no = orders::out_trade_no(&order.out_order_no);
        let state = PaymentState::parse(&payment.state);
        // An earlier attempt may have reached the platform: its answer decides.
        let tried = payment.out_trade_no.is_some() || status == OrderStatus::PaymentFailed;
        if state == Some(PaymentState::Paid) || tried {
            match gateway.query(&order.out_order_no, Some(&trade_no)).await {
                Ok(PlatformState::Paid { amount_fen, transaction_id }) => {
                    return self.record_paid(&order, amount_fen, transaction_id).await;
                }
                Ok(PlatformState::Capturing { .. }) => return self.look_again(id).await,
                Ok(PlatformState::Authorized { .. }) => {}
                Ok(PlatformState::Pending | PlatformState::Cancelled) => {
                    // Nothing can be charged any more: the amount stays as debt for a person.
                    tracing::error!(order = id, "the pre-authorisation is gone; the charge cannot be made");
                    return self.failed(id, status).await;
                }
                Err(e) => return Err(HandlerError::Failed(format!("querying {}: {e}", order.out_order_no))),
            }
        }
        // The platform charges at most what it holds; a basket over the cap is charged as one
        // capped line, the rest owed (booked at the settlement).
        let total = orders::charge_fen(&order);
        let lines = if total < order.total_fen.unwrap_or(0) {
            vec![CaptureLine { name: self.title.clone(), unit_fen: total, count: 1 }]
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
            title: self.title.clone(),
        };
        self.mark_capturing(&payment, &trade_no).await?;
        match gateway.capture(&req).await {
            Ok(CaptureOutcome::Paid { transaction_id }) => self.record_paid(&order, total, transaction_id).await,
            Ok(CaptureOutcome::Collecting) => self.look_again(id).await,
            Err(PayError::Retryable(e)) => Err(HandlerError::Failed(format!("capturing {}: {e}", order.out_order_no))),
            Err(e) => {
                tracing::warn!(order = id, error = %e, "charge refused");
                let no = order.out_order_no.clone();
                self.db
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
                self.failed(id, status).await
            }
        }
    }
}

impl Capture {
    async fn mark_capturing(&self, payment: &Payment, trade_no: &str) -> Result<(), HandlerError> {
        let (no, trade) = (payment.out_order_no.clone(), trade_no.to_string());
        self.db
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
        Ok(())
    }

    async fn record_paid(&self, order: &Order, amount_fen: i64, transaction_id: String) -> Result<(), HandlerError> {
        let (id, no) = (order.id, order.out_order_no.clone());
        self.db
            .write(move |c| {
                db::write_tx(c, |c| {
                    payments::record_paid(c, &no, amount_fen, &transaction_id, db::now())?;
                    orders::paid(c, id, amount_fen, db::now())
                })
            })
            .await?;
        tracing::info!(order = id, amount_fen, "paid");
        Ok(())
    }

    /// `payment_failed` (debt on the account) and a retry later; a repeat failure only schedules
    /// the next retry.
    async fn failed(&self, id: i64, status: OrderStatus) -> Result<(), HandlerError> {
        let later = retry_in(&self.orders);
        self.db
            .write(move |c| {
                db::write_tx(c, |c| {
                    if status == OrderStatus::PaymentFailed {
                        let message = serde_json::json!({ "order_id": id });
                        outbox::enqueue(c, topics::PAYMENT_CAPTURE, &message, Some(db::now() + later))?;
                    } else {
                        orders::payment_failed(c, id, later, db::now())?;
                    }
                    Ok::<_, DbError>(())
                })
            })
            .await?;
        Ok(())
    }

    /// The platform is collecting: its callback finishes the order; if it never comes, look again.
    async fn look_again(&self, id: i64) -> Result<(), HandlerError> {
        let later = retry_in(&self.orders);
        self.db
            .write(move |c| {
                let message = serde_json::json!({ "order_id": id });
                outbox::enqueue(c, topics::PAYMENT_CAPTURE, &message, Some(db::now() + later))
            })
            .await?;
        Ok(())
    }
}
