//! Mini-program API: cabinets near the shopper.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::db::{cabinets, layout};
use crate::domain::cabinet::CabinetStatus;
use crate::domain::layout::MAX_LATITUDE;
use crate::domain::liveness::Liveness;
use crate::domain::validation::FieldErrors;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NearbyQuery {
    /// GCJ-02 (what `wx.getLocation({type: 'gcj02'})` and `my.getLocation` return).
    /// Within ±85.05112878, the Web-Mercator square map indexes cover.
    #[param(minimum = -85.05112878, maximum = 85.05112878)]
    pub lat: f64,
    #[param(minimum = -180.0, maximum = 180.0)]
    pub lng: f64,
    /// Metres; at most `api.nearby_max_radius_m` (the spec states this node's).
    #[param(exclusive_minimum = 0.0)]
    pub radius_m: Option<f64>,
    /// At most `api.nearby_max_limit` (the spec states this node's).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NearbyCabinet {
    pub sn: String,
    pub distance_m: f64,
    pub status: CabinetStatus,
    pub liveness: Liveness,
    /// Ready and online: a shopper can buy from it now.
    pub sellable: bool,
    pub address: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    /// At least one unit of an active product on a lane.
    pub has_stock: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NearbyResponse {
    pub cabinets: Vec<NearbyCabinet>,
}

/// Cabinets near the shopper, nearest first.
#[utoipa::path(
    get, path = "/api/v1/cabinets/nearby", tag = "cabinets", params(NearbyQuery),
    responses(
        (status = 200, description = "Nearest first", body = NearbyResponse),
        (status = 422, description = "A coordinate, radius or limit out of range", body = crate::web::error::ErrorBody),
    )
)]
pub async fn nearby(state: web::Data<AppState>, q: web::Query<NearbyQuery>) -> Result<HttpResponse, ApiError> {
    let api = &state.svc.config.api;
    let radius_m = q.radius_m.unwrap_or(api.nearby_default_radius_m);
    let limit = q.limit.unwrap_or(api.nearby_default_limit);
    let mut errors = FieldErrors::default();
    if !(q.lat.is_finite() && (-MAX_LATITUDE..=MAX_LATITUDE).contains(&q.lat)) {
        errors.push("lat", "out_of_range", format!("latitude must be between -{MAX_LATITUDE} and {MAX_LATITUDE}"));
    }
    if !(q.lng.is_finite() && (-180.0..=180.0).contains(&q.lng)) {
        errors.push("lng", "out_of_range", "longitude must be between -180 and 180");
    }
    if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= api.nearby_max_radius_m) {
        errors.push("radius_m", "out_of_range", format!("radius must be in (0, {}] metres", api.nearby_max_radius_m));
    }
    if !(1..=api.nearby_max_limit).contains(&limit) {
        errors.push("limit", "out_of_range", format!("limit must be between 1 and {}", api.nearby_max_limit));
    }
    errors.finish().map_err(ApiError::Invalid)?;

    let hits = state.svc.cache.geo_search(q.lng, q.lat, radius_m, limit).await?;
    let sns: Vec<String> = hits.iter().map(|h| h.member.clone()).collect();
    let (rows, stocked) = state
        .svc
        .db
        .run(move |c| {
            let rows = sns.iter().map(|sn| cabinets::find(c, sn)).collect::<Result<Vec<_>, _>>()?;
            Ok::<_, crate::db::DbError>((rows, layout::with_stock(c, &sns)?))
        })
        .await?;
    let out: Vec<NearbyCabinet> = hits
        .into_iter()
        .zip(rows)
        // A cabinet deleted since it was indexed is left out.
        .filter_map(|(hit, row)| row.map(|r| (hit, r)))
        .map(|(hit, r)| NearbyCabinet {
            sellable: r.status == CabinetStatus::Ready && r.liveness == Liveness::Online,
            has_stock: stocked.contains(&r.sn),
            distance_m: hit.distance_m.round(),
            sn: r.sn,
            status: r.status,
            liveness: r.liveness,
            address: r.address,
            lat: r.lat,
            lng: r.lng,
        })
        .collect();
    Ok(HttpResponse::Ok().json(NearbyResponse { cabinets: out }))
}
