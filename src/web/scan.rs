//! A scan, on the node that owns the cabinet (`web::cabinet_call`): the cabinet's actor reserves
//! the door, then the pre-authorisation starts.

use super::order_view::{OrderView, ScanResponse};
use super::{ApiError, AppState};
use crate::actors::cabinet::door::{PurchaseError, StartPurchase};
use crate::actors::registry::Lookup;
use crate::actors::route::Owner;
use crate::db;
use crate::domain::cabinet::Sn;
use crate::domain::order::ScanRefusal;
use crate::flows;
use crate::flows::scan::PreauthFail;
use crate::pay::{Channel, PayError};

/// The shopper and the door of a scan.
pub(super) struct ScanOf {
    pub user_id: i64,
    pub payer_id: String,
    pub channel: Channel,
    pub door: u32,
}

/// A scan, on the node that owns the cabinet (or any, when nobody does): the actor reserves the
/// cabinet, then the pre-authorisation starts.
pub(super) async fn scan_here(state: &AppState, sn: &Sn, owner: &Owner, of: ScanOf) -> Result<ScanResponse, ApiError> {
    let ScanOf { user_id, payer_id, channel, door } = of;
    let actor = match owner {
        Owner::Here => state.registry.send(Lookup(sn.to_string())).await.map_err(ApiError::internal)?,
        _ => None,
    };
    let Some(actor) = actor else {
        return Err(not_here(state, sn).await?);
    };
    let start = StartPurchase { user_id, channel, payer_id: payer_id.clone(), door };
    let order = actor.send(start).await.map_err(ApiError::internal)?.map_err(|e| match e {
        // What holds the cabinet, without saying who: another shopper's id is not this one's to see.
        PurchaseError::Refused(refusal, held) => ApiError::Scan {
            refusal,
            detail: held.map(|s| {
                let yours = s.started_by == format!("user:{user_id}");
                serde_json::json!({ "session": { "kind": s.kind, "door": s.door, "since": s.since, "yours": yours } })
            }),
        },
        PurchaseError::Session(e) => e.into(),
    })?;
    let (created, effects) = flows::scan::preauthorise(&state.svc.flows(), &order, &payer_id).await;
    state.svc.effects.run(effects);
    match created {
        Ok(pre) => Ok(ScanResponse { order: OrderView::new(&order, &[], &[]), confirm: pre.confirm }),
        Err(PreauthFail::Platform(PayError::Declined { message, .. })) => Err(ApiError::Conflict {
            code: "preauth_declined",
            message: format!("the {channel} pre-authorisation was declined: {message}"),
            detail: None,
        }),
        Err(PreauthFail::Platform(other)) => {
            Err(ApiError::Platform(format!("the {channel} pre-authorisation failed: {other}")))
        }
        Err(PreauthFail::Db(e)) => Err(e.into()),
    }
}

/// No actor here: the cabinet is not connected, or does not exist.
async fn not_here(state: &AppState, sn: &Sn) -> Result<ApiError, ApiError> {
    let key = sn.to_string();
    let exists = state.svc.db.run(move |c| db::cabinets::find(c, &key)).await?.is_some();
    Ok(match exists {
        true => ApiError::Scan { refusal: ScanRefusal::CabinetNotOnline, detail: None },
        false => ApiError::NotFound("cabinet".into()),
    })
}
