//! Each lane's load cell, day by day: its noise and the drift its closed-door baseline followed
//! (`lane_health`). The cabinet actor adds what it saw since it last wrote; reconciliation and
//! the dashboard read it.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;
use serde::Serialize;

use super::schema::lane_health;
use super::{AnyConnection, DbResult, write_tx};

/// One lane's day, or what to add to it.
#[derive(Debug, Clone, PartialEq, Insertable, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = lane_health)]
pub struct LaneHealth {
    pub sn: String,
    pub lane: String,
    /// `YYYY-MM-DD`, Asia/Shanghai.
    pub day: String,
    /// σ of one reading at rest, grams; `None` until the lane's stream has shown it.
    pub noise_g: Option<f64>,
    /// Slow drift the closed-door baseline followed that day, grams (signed).
    pub drift_g: f64,
    /// Closed-door moves too fast or too large to be drift.
    pub moves: i32,
    /// The tracked weight when last written, grams.
    pub baseline_g: Option<f64>,
    #[schema(value_type = String)]
    pub updated_at: NaiveDateTime,
}

/// Add each row's drift and moves to its lane's day, and take its noise and baseline as the
/// latest (a `None` keeps what was known).
pub fn add(conn: &mut AnyConnection, rows: &[LaneHealth]) -> DbResult<()> {
    write_tx(conn, |conn| {
        for row in rows {
            crate::on_backend!(conn, |c| {
                diesel::insert_into(lane_health::table)
                    .values(row)
                    .on_conflict((lane_health::sn, lane_health::lane, lane_health::day))
                    .do_update()
                    .set((
                        lane_health::noise_g.eq(diesel::dsl::sql::<
                            diesel::sql_types::Nullable<diesel::sql_types::Double>,
                        >(
                            "COALESCE(excluded.noise_g, lane_health.noise_g)"
                        )),
                        lane_health::drift_g.eq(lane_health::drift_g + excluded(lane_health::drift_g)),
                        lane_health::moves.eq(lane_health::moves + excluded(lane_health::moves)),
                        lane_health::baseline_g.eq(diesel::dsl::sql::<
                            diesel::sql_types::Nullable<diesel::sql_types::Double>,
                        >(
                            "COALESCE(excluded.baseline_g, lane_health.baseline_g)"
                        )),
                        lane_health::updated_at.eq(excluded(lane_health::updated_at)),
                    ))
                    .execute(c)
            })?;
        }
        Ok(())
    })
}

/// A cabinet's lanes from `since_day` on, by day then lane.
pub fn for_cabinet(conn: &mut AnyConnection, sn: &str, since_day: &str) -> DbResult<Vec<LaneHealth>> {
    Ok(lane_health::table
        .select(LaneHealth::as_select())
        .filter(lane_health::sn.eq(sn))
        .filter(lane_health::day.ge(since_day))
        .order((lane_health::day.asc(), lane_health::lane.asc()))
        .load(conn)?)
}

/// Each lane's latest known noise (its newest day with one), grams.
pub fn latest_noise(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<(String, f64)>> {
    let rows: Vec<(String, Option<f64>)> = lane_health::table
        .select((lane_health::lane, lane_health::noise_g))
        .filter(lane_health::sn.eq(sn))
        .filter(lane_health::noise_g.is_not_null())
        .order((lane_health::lane.asc(), lane_health::day.desc(), lane_health::updated_at.desc()))
        .load(conn)?;
    let mut out: Vec<(String, f64)> = Vec::new();
    for (lane, noise) in rows {
        if let Some(n) = noise
            && out.last().is_none_or(|(l, _)| *l != lane)
        {
            out.push((lane, n));
        }
    }
    Ok(out)
}
