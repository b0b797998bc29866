//! Requests of the HTTP API that a cabinet's actor must answer (a scan, a door session, a
//! configuration, a calibration step, live weights). The actor lives on the node that owns the
//! cabinet: here, the request goes straight to it; on another node, it goes there
//! (`actors::route`), is answered there exactly as it would be here, and the answer — status and
//! body — is passed on. A cabinet connected to no node is answered here: an operator may
//! configure it, a shopper is told it is not online.

use std::sync::Arc;

use actix::Addr;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::actors::cabinet::CabinetActor;
use crate::actors::cabinet::door::StartDoorSession;
use crate::actors::cabinet::held::SessionInfo;
use crate::actors::cabinet::lanes::LaneWeight;
use crate::actors::cabinet::requests::{AbortSession, CalibrateStep, SaveConfig, SendTags, StartCalibration};
use crate::actors::registry::{Ensure, Lookup};
use crate::actors::route::{self, Owner, Reply, Routed, Routing, What};
use crate::device::messages::CalibrationStep;
use crate::domain::cabinet::Sn;
use crate::domain::layout::LayoutInput;
use crate::domain::session::SessionKind;
use crate::pay::Channel;

/// What the cabinet's actor is asked, with everything the asking node knew (who asks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Scan { user_id: i64, payer_id: String, channel: Channel, door: u32 },
    DoorSession { kind: SessionKind, door: u32, by: String },
    SaveConfig { layout: LayoutInput, by: String },
    SendTags { by: String },
    StartCalibration { door: u32, by: String },
    CalibrateStep { step: CalibrationStep, standard_g: Option<f64> },
    AbortSession { by: String },
    Weights,
    Connection,
}

/// An answer: its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Answer, ApiError> {
        Ok(Answer { status, body: serde_json::to_value(value).map_err(ApiError::internal)? })
    }

    fn respond(self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndedOut {
    /// The session that was ended.
    pub ended: SessionInfo,
}

/// A connected cabinet's weights as its actor holds them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WeightsOut {
    pub sn: String,
    pub logged_in: bool,
    pub doors_open: Vec<u32>,
    pub session: Option<SessionInfo>,
    pub lanes: Vec<LaneWeight>,
}

impl WeightsOut {
    fn new(sn: &Sn, view: crate::actors::cabinet::CabinetView) -> WeightsOut {
        WeightsOut {
            sn: sn.to_string(),
            logged_in: view.logged_in,
            doors_open: view.doors_open,
            session: view.session,
            lanes: view.lanes,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ConnectionOut {
    pub logged_in: bool,
    pub boot: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Ask the cabinet's actor, wherever it is.
pub async fn call(state: &AppState, sn: &Sn, call: Call) -> Result<HttpResponse, ApiError> {
    Ok(ask(state, sn, call).await?.respond())
}

/// [`call`], with the answer as a value.
pub async fn ask(state: &AppState, sn: &Sn, call: Call) -> Result<Answer, ApiError> {
    let what = What::Call(serde_json::to_value(&call).map_err(ApiError::internal)?);
    match state.svc.router.route(sn.as_str(), what).await {
        Ok(Routing::Local(owner)) => here(state, sn, call, &owner).await,
        Ok(Routing::Remote(Reply::Answer { status, body })) => {
            Ok(Answer { status: StatusCode::from_u16(status).map_err(ApiError::internal)?, body })
        }
        Ok(Routing::Remote(other)) => Err(ApiError::internal(format!("the cabinet's node answered {other:?}"))),
        Err(e) => Err(ApiError::Unreachable(e.to_string())),
    }
}

/// The cabinet's actor on this node; one is started (from the database) for an operator's
/// request when the cabinet is connected nowhere.
async fn actor(state: &AppState, sn: &Sn, owner: &Owner) -> Result<Option<Addr<CabinetActor>>, ApiError> {
    let found = match owner {
        Owner::Here => state.registry.send(Lookup(sn.to_string())).await,
        _ => state.registry.send(Ensure(sn.clone())).await.map(Some),
    };
    found.map_err(ApiError::internal)
}

/// Answer here: this node owns the cabinet, or nobody does.
async fn here(state: &AppState, sn: &Sn, call: Call, owner: &Owner) -> Result<Answer, ApiError> {
    if let Call::Scan { user_id, payer_id, channel, door } = call {
        let of = super::scan::ScanOf { user_id, payer_id, channel, door };
        return Answer::json(StatusCode::CREATED, &super::scan::scan_here(state, sn, owner, of).await?);
    }
    if matches!(call, Call::Weights | Call::Connection) && *owner != Owner::Here {
        return Err(not_connected(sn));
    }
    let actor = actor(state, sn, owner).await?.ok_or_else(|| not_connected(sn))?;
    let mailbox = |e: actix::MailboxError| ApiError::Unavailable(format!("cabinet actor unavailable: {e}"));
    match call {
        Call::Scan { .. } => Err(ApiError::internal("a scan is answered above")),
        Call::DoorSession { kind, door, by } => {
            let started = actor.send(StartDoorSession { kind, door, by }).await.map_err(mailbox)??;
            Answer::json(StatusCode::CREATED, &started)
        }
        Call::SaveConfig { layout, by } => {
            Answer::json(StatusCode::OK, &actor.send(SaveConfig { layout, by }).await.map_err(mailbox)??)
        }
        Call::SendTags { by } => {
            Answer::json(StatusCode::ACCEPTED, &actor.send(SendTags { by }).await.map_err(mailbox)??)
        }
        Call::StartCalibration { door, by } => {
            Answer::json(StatusCode::CREATED, &actor.send(StartCalibration { door, by }).await.map_err(mailbox)??)
        }
        Call::CalibrateStep { step, standard_g } => {
            Answer::json(StatusCode::OK, &actor.send(CalibrateStep { step, standard_g }).await.map_err(mailbox)??)
        }
        Call::AbortSession { by } => {
            let ended = actor.send(AbortSession { by }).await.map_err(mailbox)??;
            Answer::json(StatusCode::OK, &EndedOut { ended })
        }
        Call::Weights => {
            let view = actor.send(crate::actors::cabinet::Inspect).await.map_err(mailbox)?;
            Answer::json(StatusCode::OK, &WeightsOut::new(sn, view))
        }
        Call::Connection => {
            let v = actor.send(crate::actors::cabinet::Inspect).await.map_err(mailbox)?;
            let out = ConnectionOut { logged_in: v.logged_in, boot: v.boot, last_seq: v.last_seq };
            Answer::json(StatusCode::OK, &out)
        }
    }
}

fn not_connected(sn: &Sn) -> ApiError {
    ApiError::Conflict {
        code: "cabinet_not_connected",
        message: format!("cabinet {sn} is not connected"),
        detail: None,
    }
}

/// Answers what other nodes route to this one.
pub struct Server(pub AppState);

#[async_trait::async_trait]
impl crate::mq::rpc::Serve for Server {
    async fn serve(&self, request: Vec<u8>) -> Vec<u8> {
        let reply = self.reply(request).await;
        serde_json::to_vec(&reply).unwrap_or_default()
    }
}

impl Server {
    async fn reply(&self, request: Vec<u8>) -> Reply {
        let routed: Routed = match serde_json::from_slice(&request) {
            Ok(r) => r,
            Err(e) => return Reply::Refused(format!("routed request does not read: {e}")),
        };
        let svc = &self.0.svc;
        if let Some(reply) = route::serve_tell(&self.0.cabinets, &svc.ownership, &routed).await {
            return reply;
        }
        let (Ok(sn), What::Call(value)) = (Sn::parse(&routed.sn), routed.what) else {
            return Reply::Refused(format!("not a cabinet request for {:?}", routed.sn));
        };
        let call: Call = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(e) => return Reply::Refused(format!("cabinet request does not read: {e}")),
        };
        let answer = match here(&self.0, &sn, call, &Owner::Here).await {
            Ok(answer) => answer,
            Err(e) => {
                use actix_web::ResponseError;
                let body = serde_json::to_value(e.body()).unwrap_or_default();
                Answer { status: e.status_code(), body }
            }
        };
        Reply::Answer { status: answer.status.as_u16(), body: answer.body }
    }
}

/// Start answering what other nodes route here.
pub fn serve(state: &AppState) {
    state.svc.router.rpc.serve(Arc::new(Server(state.clone())));
}
