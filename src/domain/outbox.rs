//! The outbox: messages written in the same transaction as the change they announce, and
//! delivered after it commits.

use super::names::named_enum;

named_enum! {
    /// Where a message stands (`outbox.status`).
    pub enum OutboxStatus {
        /// Not delivered yet (or being retried).
        Pending = "pending",
        /// Delivered: confirmed by RabbitMQ, or handled in process.
        Done = "done",
        /// Given up on after `messages.max_attempts`; kept for operators to retry.
        Dead = "dead",
    }
}
