//! Operators at the cabinet: restock tasks, and the restock and maintenance sessions that open a
//! door for a restocker or a maintainer.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::ApiError;
use super::extract::{AnyRole, Calibrators, Ops, OpsCabinet, Restockers, page_limit};
use super::setup::{actor, mailbox};
use crate::actors::cabinet::door::StartDoorSession;
use crate::db::restock;
use crate::domain::cabinet::Sn;
use crate::domain::restock::TaskStatus;
use crate::domain::session::SessionKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// open, in_progress, done.
    pub status: Option<TaskStatus>,
    pub sn: Option<String>,
    pub limit: Option<i64>,
}

fn task_json(t: &crate::db::models::RestockTask) -> serde_json::Value {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": t.id, "sn": t.sn, "status": t.status,
        "wanted": parse(&t.wanted), "added": t.added.as_deref().map(parse),
        "session_id": t.session_id, "created_at": t.created_at.and_utc(), "closed_at": t.closed_at.map(|c| c.and_utc()),
        "closed_by": t.closed_by,
    })
}

/// `GET /ops/restock-tasks?status=&sn=&limit=` → tasks, newest first. Roles: any.
pub async fn list(ops: Ops<AnyRole>, q: web::Query<TaskQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let tasks = ops.read(move |c| restock::list(c, q.status, q.sn.as_deref(), limit)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>() })))
}

/// `GET /ops/restock-tasks/{id}` → one task, with what was wanted and what was added. Roles: any.
pub async fn get(ops: Ops<AnyRole>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = ops.read(move |c| restock::find(c, id)).await?;
    let task = task.ok_or_else(|| ApiError::NotFound(format!("restock task {id}")))?;
    Ok(HttpResponse::Ok().json(task_json(&task)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorIn {
    pub door: u32,
}

/// `POST /ops/cabinets/{sn}/restock` {door} — admin, operator, restocker: open a door to restock.
/// The cabinet's open task is in progress with the session; after the door closes, what was
/// added is counted by weight into book stock and the task is closed with it.
pub async fn start_restock(
    OpsCabinet { ops, sn }: OpsCabinet<Restockers>,
    body: web::Json<DoorIn>,
) -> Result<HttpResponse, ApiError> {
    start(&ops, sn, body.door, SessionKind::Restock).await
}

/// `POST /ops/cabinets/{sn}/maintenance` {door} — admin, operator, maintainer: open a door for
/// maintenance. Nothing is sold; any weight change is recorded on the session and flagged.
pub async fn start_maintenance(
    OpsCabinet { ops, sn }: OpsCabinet<Calibrators>,
    body: web::Json<DoorIn>,
) -> Result<HttpResponse, ApiError> {
    start(&ops, sn, body.door, SessionKind::Maintenance).await
}

async fn start<R>(ops: &Ops<R>, sn: Sn, door: u32, kind: SessionKind) -> Result<HttpResponse, ApiError> {
    let started = actor(&ops.state, &sn)
        .await?
        .send(StartDoorSession { kind, door, by: ops.user.username.clone() })
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Created().json(started))
}
