//! Ops view of the outbox: messages waiting or given up on, and putting a dead one back.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, Managers, Ops, page_limit};
use super::ops::utc;
use crate::db::outbox::{self, OutboxRow, OutboxStatus};
use crate::flows;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// `dead` (default) or `pending`.
    #[param(value_type = Option<String>, pattern = "^(dead|pending)$")]
    pub status: Option<OutboxStatus>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagesOut {
    pub messages: Vec<MessageOut>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MessageOut {
    pub id: String,
    pub topic: String,
    pub payload: serde_json::Value,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub created_at: Option<DateTime<Utc>>,
    pub deliver_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

fn message_out(r: OutboxRow) -> MessageOut {
    MessageOut {
        // Stored by `enqueue` from a JSON value; shown as text if it somehow is not.
        payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::String(r.payload)),
        id: r.message_id,
        topic: r.topic,
        status: r.status,
        attempts: r.attempts,
        created_at: utc(Some(r.created_at)),
        deliver_at: utc(Some(r.deliver_at)),
        next_attempt_at: utc(Some(r.next_attempt_at)),
        last_error: r.last_error,
    }
}

/// `GET /ops/messages?status=dead|pending&limit=` → newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/messages", operation_id = "list_messages", tag = "ops: money", security(("operator" = [])), params(MessagesQuery),
    responses((status = 200, description = "Messages, newest first", body = MessagesOut, links(("RetryMessage" = (operation_id = "retry_message", parameters(("id" = "$response.body#/messages/0/id")))))))
)]
pub async fn list(ops: Ops<AnyRole>, q: web::Query<MessagesQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let status = match q.status.unwrap_or(OutboxStatus::Dead) {
        s @ (OutboxStatus::Dead | OutboxStatus::Pending) => s,
        other => return Err(ApiError::BadRequest(format!("status must be dead or pending, got {other}"))),
    };
    let rows = ops.read(move |c| outbox::list(c, status, limit)).await?;
    let messages: Vec<MessageOut> = rows.into_iter().map(message_out).collect();
    Ok(HttpResponse::Ok().json(MessagesOut { messages }))
}

/// `POST /ops/messages/{id}/retry`: a dead message back to pending, due now, attempts from zero.
/// Roles: admin, operator.
#[utoipa::path(
    post, path = "/ops/messages/{id}/retry", operation_id = "retry_message", tag = "ops: money", security(("operator" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "Pending again, due now", body = MessageOut),
        (status = 404, description = "No dead message with this id", body = crate::web::error::ErrorBody),
    )
)]
pub async fn retry(ops: Ops<Managers>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (row, effects) = flows::messages::retry_dead(&ops.state.svc.db, id.clone()).await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!("dead message {id}")));
    };
    tracing::info!(message_id = %id, by = %ops.user.username, "dead message requeued");
    ops.state.svc.effects.run(effects);
    Ok(HttpResponse::Ok().json(message_out(row)))
}
