//! Reconciliation for operators: the nightly runs, a day run again by hand, the cases where a
//! platform's bill and Heft disagree (resolved with a note), and the kept bill behind each.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, Managers, Ops, page_limit};
use crate::db::bills::{self, BillCase, CaseFilter};
use crate::db::reconcile as runs;
use crate::domain::bills::{BillCaseKind, BillCaseStatus, Resolution};
use crate::domain::calendar::business_day;
use crate::domain::payment::Channel;
use crate::domain::reconcile::{Job, Part};
use crate::domain::validation::FieldError;
use crate::flows::reconcile::{self, RunOutcome, RunView};

/// Longest note on a resolution, in characters.
const MAX_NOTE: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    pub status: Option<BillCaseStatus>,
    pub channel: Option<Channel>,
    /// The bill's business day, `YYYY-MM-DD`.
    #[param(value_type = Option<String>, format = Date)]
    pub day: Option<NaiveDate>,
    pub kind: Option<BillCaseKind>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasesOut {
    pub cases: Vec<BillCase>,
}

/// `GET /ops/bill-cases?status=open&channel=&day=&kind=&limit=` → cases, newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/bill-cases", operation_id = "list_bill_cases", tag = "ops: money", security(("operator" = [])), params(CaseQuery),
    responses((status = 200, description = "Cases, newest first", body = CasesOut, links(("ResolveBillCase" = (operation_id = "resolve_bill_case", parameters(("id" = "$response.body#/cases/0/id")))))))
)]
pub async fn list_cases(ops: Ops<AnyRole>, q: web::Query<CaseQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let filter = CaseFilter { status: q.status, channel: q.channel, day: q.day.map(|d| d.to_string()), kind: q.kind };
    let cases = ops.read(move |c| bills::cases(c, &filter, limit)).await?;
    Ok(HttpResponse::Ok().json(CasesOut { cases }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveCaseIn {
    /// `accept` (the difference stands), `correct` (put right, with the platform or in Heft) or
    /// `write_off` (given up as a loss).
    pub resolution: Resolution,
    /// What was done and why; kept with the case.
    #[schema(min_length = 1, max_length = 1000)]
    pub note: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CasePath {
    /// The case's id.
    pub id: i64,
}

/// `POST /ops/bill-cases/{id}/resolve` — admin, operator: close a case with a note.
#[utoipa::path(
    post, path = "/ops/bill-cases/{id}/resolve", operation_id = "resolve_bill_case", tag = "ops: money", security(("operator" = [])), params(CasePath),
    request_body = ResolveCaseIn,
    responses(
        (status = 200, description = "Resolved", body = BillCase),
        (status = 404, description = "No such case", body = crate::web::error::ErrorBody),
        (status = 409, description = "already_resolved", body = crate::web::error::ErrorBody),
        (status = 422, description = "The note is empty or too long", body = crate::web::error::ErrorBody),
    )
)]
pub async fn resolve_case(
    ops: Ops<Managers>,
    path: web::Path<CasePath>,
    body: web::Json<ResolveCaseIn>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id;
    let ResolveCaseIn { resolution, note } = body.into_inner();
    let note = note.trim().to_string();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        let message = format!("must be 1 to {MAX_NOTE} characters");
        return Err(ApiError::Invalid(vec![FieldError::new("note", "length", message)]));
    }
    let by = ops.user.username.clone();
    let (resolved, case) = ops
        .state
        .svc
        .db
        .write(move |c| {
            let resolved = bills::resolve_case(c, id, resolution, &note, &by, crate::db::now())?;
            Ok::<_, crate::db::DbError>((resolved, bills::find_case(c, id)?))
        })
        .await?;
    match (resolved, case) {
        (true, Some(case)) => Ok(HttpResponse::Ok().json(case)),
        (false, Some(case)) => Err(ApiError::Conflict {
            code: "already_resolved",
            message: format!("bill case {id} was resolved ({}) already", case.resolution.map_or("", |r| r.as_str())),
            detail: None,
        }),
        (_, None) => Err(ApiError::NotFound(format!("bill case {id}"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FilePath {
    /// The kept bill's id (a case's `file_id`).
    pub id: i64,
}

/// `GET /ops/bill-files/{id}` → the bill as the platform served it (WeChat: CSV; Alipay: ZIP),
/// with its SHA-256 in `X-Content-SHA256`. Roles: any.
#[utoipa::path(
    get, path = "/ops/bill-files/{id}", operation_id = "get_bill_file", tag = "ops: money", security(("operator" = [])), params(FilePath),
    responses(
        (status = 200, description = "The file", content((String = "text/csv"), (Vec<u8> = "application/zip"))),
        (status = 404, description = "No such file", body = crate::web::error::ErrorBody),
    )
)]
pub async fn get_file(ops: Ops<AnyRole>, path: web::Path<FilePath>) -> Result<HttpResponse, ApiError> {
    let id = path.id;
    let Some((info, raw)) = ops.read(move |c| bills::raw(c, id)).await? else {
        return Err(ApiError::NotFound(format!("bill file {id}")));
    };
    let (content_type, ext) = match info.channel {
        Channel::Wechat => ("text/csv; charset=utf-8", "csv"),
        Channel::Alipay => ("application/zip", "zip"),
    };
    let name = format!("{}-{}.{ext}", info.channel, info.day);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{name}\"")))
        .insert_header(("X-Content-SHA256", info.sha256))
        .body(raw))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// From this business day on (default: a week back).
    #[param(value_type = Option<String>, format = Date)]
    pub since: Option<NaiveDate>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunsOut {
    pub runs: Vec<RunView>,
}

/// `GET /ops/reconcile/runs?since=YYYY-MM-DD` → the nightly runs, oldest day first. Roles: any.
#[utoipa::path(
    get, path = "/ops/reconcile/runs", operation_id = "list_reconcile_runs", tag = "ops: money", security(("operator" = [])), params(RunsQuery),
    responses((status = 200, description = "Runs", body = RunsOut))
)]
pub async fn list_runs(ops: Ops<AnyRole>, q: web::Query<RunsQuery>) -> Result<HttpResponse, ApiError> {
    let today = business_day(chrono::Utc::now());
    let since = q.since.unwrap_or(today - chrono::Duration::days(7)).to_string();
    let runs = ops.read(move |c| runs::since(c, &since)).await?;
    Ok(HttpResponse::Ok().json(RunsOut { runs: runs.into_iter().map(RunView::of).collect() }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIn {
    /// The business day (Asia/Shanghai), `YYYY-MM-DD`; a day that is over.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    /// Only this part of the night.
    pub only: Option<Part>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunsDone {
    pub runs: Vec<RunOutcome>,
}

/// `POST /ops/reconcile/runs` — admin, operator: run a day's jobs now, as `heft reconcile` does.
/// Running a day again changes nothing that was right and opens no case twice.
#[utoipa::path(
    post, path = "/ops/reconcile/runs", operation_id = "run_reconcile", tag = "ops: money", security(("operator" = [])),
    request_body = RunIn,
    responses(
        (status = 200, description = "How each job ended: done, waiting (the bill is not out yet) or failed", body = RunsDone),
        (status = 422, description = "The day is not over yet", body = crate::web::error::ErrorBody),
    )
)]
pub async fn run_day(ops: Ops<Managers>, body: web::Json<RunIn>) -> Result<HttpResponse, ApiError> {
    let RunIn { day, only } = body.into_inner();
    if day >= business_day(chrono::Utc::now()) {
        let message = "must be a business day that is over (Asia/Shanghai)";
        return Err(ApiError::Invalid(vec![FieldError::new("day", "not_over", message)]));
    }
    let svc = &ops.state.svc;
    let ctx = svc.flows();
    let mut done = Vec::new();
    for job in Job::of(only) {
        let outcome = reconcile::run(&ctx, svc.effects.as_ref(), job, day, svc.node_id()).await;
        done.push(outcome.map_err(ApiError::internal)?);
    }
    Ok(HttpResponse::Ok().json(RunsDone { runs: done }))
}
