//! The node's message consumers: each decodes its topic's payload, calls its flow, and hands the
//! flow's effects to the runner. Handling is at least once; the flows make it exactly once in
//! effect.

use std::sync::Arc;

use async_trait::async_trait;

use super::registry::Cabinets;
use super::route::{self, Reply, Router, Tell};
use crate::domain::door::Opening;
use crate::flows::{self, Ctx, Runner};
use crate::mq::topics::{self, Payload};
use crate::mq::{Handler, HandlerError, Message};

/// What every consumer needs.
#[derive(Clone)]
pub struct Consumer {
    pub ctx: Ctx,
    pub runner: Arc<dyn Runner>,
    /// The cabinet actors of this node, asked where a door stands (`door.open_check`)...
    pub cabinets: Cabinets,
    /// ...or the node that owns the cabinet.
    pub router: Router,
}

impl Consumer {
    /// Whether this handling is the message's last attempt before it is given up on.
    fn last_attempt(&self, msg: &Message) -> bool {
        msg.attempts.saturating_add(1) >= self.ctx.config.messages.max_attempts
    }
}

impl From<flows::FlowError> for HandlerError {
    fn from(e: flows::FlowError) -> Self {
        match e {
            flows::FlowError::Db(e) => HandlerError::Db(e),
            other => HandlerError::Failed(other.to_string()),
        }
    }
}

/// The purchase flow's consumers of this node.
pub fn handlers(consumer: &Consumer) -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(AuthTimeout(consumer.clone())),
        Arc::new(ConfirmCheck(consumer.clone())),
        Arc::new(OpenCheck(consumer.clone())),
        Arc::new(RestockCheck(consumer.clone())),
        Arc::new(Capture(consumer.clone())),
        Arc::new(Release(consumer.clone())),
        Arc::new(Refund(consumer.clone())),
    ]
}

/// A handler of one topic: its name is its topic's.
macro_rules! consumes {
    ($handler:ident, $payload:ty) => {
        pub struct $handler(Consumer);

        #[async_trait]
        impl Handler for $handler {
            fn name(&self) -> &str {
                <$payload>::TOPIC
            }

            fn topics(&self) -> Vec<String> {
                vec![<$payload>::TOPIC.to_string()]
            }

            async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
                let payload: $payload = msg.decode()?;
                let effects = self.consume(msg, payload).await?;
                self.0.runner.run(effects);
                Ok(())
            }
        }
    };
}

consumes!(AuthTimeout, topics::AuthTimeout);
consumes!(ConfirmCheck, topics::ConfirmCheck);
consumes!(OpenCheck, topics::OpenCheck);
consumes!(RestockCheck, topics::RestockCheck);
consumes!(Capture, topics::Capture);
consumes!(Release, topics::Release);
consumes!(Refund, topics::Refund);

impl AuthTimeout {
    async fn consume(&self, _: &Message, m: topics::AuthTimeout) -> Result<flows::Effects, HandlerError> {
        Ok(flows::authorise::auth_timeout(&self.0.ctx, m.order_id).await?)
    }
}

impl ConfirmCheck {
    async fn consume(&self, _: &Message, m: topics::ConfirmCheck) -> Result<flows::Effects, HandlerError> {
        Ok(flows::authorise::confirm_check(&self.0.ctx, m.order_id).await?)
    }
}

impl OpenCheck {
    /// The cabinet's actor on this node says where the door stands (sending `open` once more on
    /// the first check); the flow decides.
    async fn consume(&self, _: &Message, m: topics::OpenCheck) -> Result<flows::Effects, HandlerError> {
        let Some(order) = flows::authorise::waiting_for_door(&self.0.ctx.db, m.order_id).await? else {
            return Ok(flows::Effects::none());
        };
        let tell = Tell::OpenForOrder { order_id: order.id, send: m.attempt < 2 };
        let answer = match route::tell(&self.0.router, &self.0.cabinets, &order.sn, tell).await {
            Reply::Opening(answer) => answer,
            _ => Opening::NotHeld,
        };
        Ok(flows::authorise::open_check(&self.0.ctx, &order, m.attempt, answer).await?)
    }
}

impl RestockCheck {
    async fn consume(&self, _: &Message, m: topics::RestockCheck) -> Result<flows::Effects, HandlerError> {
        Ok(flows::restock::check(&self.0.ctx.db, m.sn).await?)
    }
}

impl Capture {
    async fn consume(&self, msg: &Message, m: topics::Capture) -> Result<flows::Effects, HandlerError> {
        flows::capture::handle(&self.0.ctx, &m, &msg.id, self.0.last_attempt(msg)).await
    }
}

impl Release {
    async fn consume(&self, msg: &Message, m: topics::Release) -> Result<flows::Effects, HandlerError> {
        flows::release::handle(&self.0.ctx, &m, &msg.id, self.0.last_attempt(msg)).await
    }
}

impl Refund {
    async fn consume(&self, msg: &Message, m: topics::Refund) -> Result<flows::Effects, HandlerError> {
        flows::refund::handle(&self.0.ctx, &m, self.0.last_attempt(msg)).await
    }
}
