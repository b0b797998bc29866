//! Operators at the cabinet: restock tasks, and the restock and maintenance sessions that open a
//! door for a restocker or a maintainer.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, Calibrators, IdPath, Ops, OpsCabinet, Restockers, SnPath, page_limit};
use crate::actors::cabinet::door::DoorSessionStarted;
use crate::db::models::RestockTask;
use crate::db::restock;
use crate::domain::cabinet::Sn;
use crate::domain::restock::TaskStatus;
use crate::domain::session::SessionKind;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub sn: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A restock task: what its lanes want, and what a restock added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskOut {
    pub id: i64,
    pub sn: String,
    pub status: TaskStatus,
    /// Per lane, the units wanted to fill it.
    pub wanted: serde_json::Value,
    /// Per lane, the units the restock added (once done).
    pub added: Option<serde_json::Value>,
    pub session_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
}

impl From<&RestockTask> for TaskOut {
    fn from(t: &RestockTask) -> Self {
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
        TaskOut {
            id: t.id,
            sn: t.sn.clone(),
            status: t.status,
            wanted: parse(&t.wanted),
            added: t.added.as_deref().map(parse),
            session_id: t.session_id,
            created_at: t.created_at.and_utc(),
            closed_at: t.closed_at.map(|c| c.and_utc()),
            closed_by: t.closed_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TasksOut {
    pub tasks: Vec<TaskOut>,
}

/// `GET /ops/restock-tasks?status=&sn=&limit=` → tasks, newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/restock-tasks", operation_id = "list_restock_tasks", tag = "ops: stock", security(("operator" = [])), params(TaskQuery),
    responses((status = 200, description = "Tasks, newest first", body = TasksOut, links(("GetTask" = (operation_id = "get_restock_task", parameters(("id" = "$response.body#/tasks/0/id")))))))
)]
pub async fn list(ops: Ops<AnyRole>, q: web::Query<TaskQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let tasks = ops.read(move |c| restock::list(c, q.status, q.sn.as_deref(), limit)).await?;
    Ok(HttpResponse::Ok().json(TasksOut { tasks: tasks.iter().map(TaskOut::from).collect() }))
}

/// `GET /ops/restock-tasks/{id}` → one task, with what was wanted and what was added. Roles: any.
#[utoipa::path(
    get, path = "/ops/restock-tasks/{id}", operation_id = "get_restock_task", tag = "ops: stock", security(("operator" = [])), params(IdPath),
    responses((status = 200, description = "The task", body = TaskOut))
)]
pub async fn get(ops: Ops<AnyRole>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = ops.read(move |c| restock::find(c, id)).await?;
    let task = task.ok_or_else(|| ApiError::NotFound(format!("restock task {id}")))?;
    Ok(HttpResponse::Ok().json(TaskOut::from(&task)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorIn {
    /// A door of the cabinet's configuration.
    #[schema(minimum = 1, maximum = 64)]
    pub door: u32,
}

/// `POST /ops/cabinets/{sn}/restock` {door} — admin, operator, restocker: open a door to restock.
/// The cabinet's open task is in progress with the session; after the door closes, what was
/// added is counted by weight into book stock and the task is closed with it.
#[utoipa::path(
    post, path = "/ops/cabinets/{sn}/restock", tag = "ops: stock", security(("operator" = [])), params(SnPath),
    request_body = DoorIn,
    responses(
        (status = 201, description = "The door is opening for the restocker", body = DoorSessionStarted),
        (status = 409, description = "cabinet_busy (with the session holding it), cabinet_not_connected, not_configured", body = crate::web::error::ErrorBody),
        (status = 502, description = "device_failed: the cabinet did not open the door", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn start_restock(
    OpsCabinet { ops, sn }: OpsCabinet<Restockers>,
    body: web::Json<DoorIn>,
) -> Result<HttpResponse, ApiError> {
    start(&ops, sn, body.door, SessionKind::Restock).await
}

/// `POST /ops/cabinets/{sn}/maintenance` {door} — admin, operator, maintainer: open a door for
/// maintenance. Nothing is sold; any weight change is recorded on the session and flagged.
#[utoipa::path(
    post, path = "/ops/cabinets/{sn}/maintenance", tag = "ops: setup", security(("operator" = [])), params(SnPath),
    request_body = DoorIn,
    responses(
        (status = 201, description = "The door is opening for the maintainer", body = DoorSessionStarted),
        (status = 409, description = "cabinet_busy (with the session holding it), cabinet_not_connected, not_configured", body = crate::web::error::ErrorBody),
        (status = 502, description = "device_failed: the cabinet did not open the door", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn start_maintenance(
    OpsCabinet { ops, sn }: OpsCabinet<Calibrators>,
    body: web::Json<DoorIn>,
) -> Result<HttpResponse, ApiError> {
    start(&ops, sn, body.door, SessionKind::Maintenance).await
}

async fn start<R>(ops: &Ops<R>, sn: Sn, door: u32, kind: SessionKind) -> Result<HttpResponse, ApiError> {
    let by = ops.user.username.clone();
    super::cabinet_call::call(&ops.state, &sn, super::cabinet_call::Call::DoorSession { kind, door, by }).await
}
