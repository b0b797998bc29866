//! A cabinet's configuration: its type, doors and lanes, the calibration of each lane, and the
//! versions of the configuration and of the shelf labels the cabinet has acknowledged.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{Cabinet, CabinetType, Lane, NewCabinetEvent};
use super::schema::{cabinet_events, cabinet_types, cabinets, lanes, products};
use super::{AnyConnection, DbResult};
use crate::domain::cabinet::{CabinetEventKind, CabinetStatus};
use crate::domain::layout::{LayoutInput, ProductState};
use crate::domain::units::{Fen, Grams};

/// Channels a cabinet type has when its type is not in `cabinet_types` (provisioned before the
/// type was described).
const DEFAULT_CHANNELS: i32 = 32;

pub fn cabinet_type(conn: &mut AnyConnection, name: &str) -> DbResult<Option<CabinetType>> {
    Ok(cabinet_types::table.find(name).select(CabinetType::as_select()).first(conn).optional()?)
}

pub fn cabinet_types(conn: &mut AnyConnection) -> DbResult<Vec<CabinetType>> {
    Ok(cabinet_types::table.select(CabinetType::as_select()).order(cabinet_types::name).load(conn)?)
}

/// Insert or replace a cabinet type.
pub fn put_cabinet_type(conn: &mut AnyConnection, t: &CabinetType) -> DbResult<()> {
    let updated = diesel::update(cabinet_types::table.find(&t.name))
        .set((
            cabinet_types::sensor_channels.eq(t.sensor_channels),
            cabinet_types::temp_min_c.eq(t.temp_min_c),
            cabinet_types::temp_max_c.eq(t.temp_max_c),
            cabinet_types::temp_alert_after_s.eq(t.temp_alert_after_s),
            cabinet_types::updated_at.eq(t.updated_at),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(cabinet_types::table)
            .values((
                cabinet_types::name.eq(&t.name),
                cabinet_types::sensor_channels.eq(t.sensor_channels),
                cabinet_types::temp_min_c.eq(t.temp_min_c),
                cabinet_types::temp_max_c.eq(t.temp_max_c),
                cabinet_types::temp_alert_after_s.eq(t.temp_alert_after_s),
                cabinet_types::created_at.eq(t.created_at),
                cabinet_types::updated_at.eq(t.updated_at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Lanes of a cabinet in door, then shelf order.
pub fn lanes(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<Lane>> {
    Ok(lanes::table
        .select(Lane::as_select())
        .filter(lanes::sn.eq(sn))
        .order((lanes::door, lanes::position))
        .load(conn)?)
}

/// The sensor channels of a cabinet type (a type not described in `cabinet_types` has the default).
pub fn channels_of(conn: &mut AnyConnection, cabinet_type: &str) -> DbResult<u32> {
    let channels = self::cabinet_type(conn, cabinet_type)?.map(|t| t.sensor_channels).unwrap_or(DEFAULT_CHANNELS);
    Ok(u32::try_from(channels).unwrap_or(0))
}

/// Whether each of these products exists and is on sale.
pub fn product_states(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<HashMap<i64, ProductState>> {
    let known: Vec<(i64, bool)> = products::table
        .select((products::id, products::active))
        .filter(products::id.eq_any(ids.to_vec()))
        .load(conn)?;
    Ok(known
        .into_iter()
        .map(|(id, active)| (id, if active { ProductState::Active } else { ProductState::Inactive }))
        .collect())
}

/// Store a validated configuration of cabinet `cab` (inside the caller's transaction): its lanes
/// replaced whole. A lane that keeps its code and channel keeps its calibration; any other lane
/// must be calibrated again. Bumps the configuration and label versions and returns the new
/// configuration version.
pub fn store(conn: &mut AnyConnection, cab: &Cabinet, input: &LayoutInput, at: NaiveDateTime) -> DbResult<i64> {
    let sn = cab.sn.as_str();
    let previous: HashMap<String, Lane> = lanes(conn, sn)?.into_iter().map(|l| (l.code.clone(), l)).collect();
    diesel::delete(lanes::table.filter(lanes::sn.eq(sn))).execute(conn)?;
    let mut rows = Vec::new();
    for door in &input.doors {
        for (position, l) in door.lanes.iter().enumerate() {
            let channel = i32::try_from(l.channel).unwrap_or(i32::MAX);
            let kept = previous.get(&l.code).filter(|p| p.channel == channel);
            rows.push(Lane {
                sn: sn.to_string(),
                code: l.code.clone(),
                door: i32::try_from(door.door).unwrap_or(i32::MAX),
                position: i32::try_from(position).unwrap_or(i32::MAX),
                name: l.name.clone(),
                channel,
                capacity: i32::try_from(l.capacity).unwrap_or(i32::MAX),
                threshold: i32::try_from(l.threshold).unwrap_or(i32::MAX),
                product_id: l.product_id,
                stock: i32::try_from(l.stock).unwrap_or(i32::MAX),
                zero_counts: kept.and_then(|p| p.zero_counts),
                counts_per_g: kept.and_then(|p| p.counts_per_g),
                calibrated_at: kept.and_then(|p| p.calibrated_at),
            });
        }
    }
    // One statement per lane: SQLite's multi-row insert goes through MultiConnection only one row
    // at a time anyway, and a cabinet has tens of lanes.
    for row in &rows {
        diesel::insert_into(lanes::table).values(row).execute(conn)?;
    }
    let version = cab.config_version + 1;
    let (lat, lng) = match (input.lat, input.lng) {
        (Some(lat), Some(lng)) => (Some(lat), Some(lng)),
        _ => (cab.lat, cab.lng),
    };
    diesel::update(cabinets::table.find(sn))
        .set((
            cabinets::config_version.eq(version),
            cabinets::tags_version.eq(cab.tags_version + 1),
            cabinets::address.eq(input.address.clone().or(cab.address.clone())),
            cabinets::lat.eq(lat),
            cabinets::lng.eq(lng),
            cabinets::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(version)
}

/// The cabinet acknowledged configuration `version`. Returns whether it is the current one.
pub fn record_config_ack(conn: &mut AnyConnection, sn: &str, version: i64, at: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(
        cabinets::table
            .find(sn)
            .filter(cabinets::config_version.eq(version))
            .filter(cabinets::config_acked_version.lt(version)),
    )
    .set((cabinets::config_acked_version.eq(version), cabinets::updated_at.eq(at)))
    .execute(conn)?;
    Ok(n == 1)
}

/// The cabinet acknowledged label `version`.
pub fn record_tags_ack(conn: &mut AnyConnection, sn: &str, version: i64, at: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(
        cabinets::table
            .find(sn)
            .filter(cabinets::tags_version.ge(version))
            .filter(cabinets::tags_acked_version.lt(version)),
    )
    .set((cabinets::tags_acked_version.eq(version), cabinets::updated_at.eq(at)))
    .execute(conn)?;
    Ok(n == 1)
}

/// A lane's shelf label: lane code, product name and price (fen); empty for a lane with no product.
pub type Label = (String, String, Fen);

/// The labels of every lane, and the label version they make.
pub fn price_tags(conn: &mut AnyConnection, sn: &str) -> DbResult<(i64, Vec<Label>)> {
    let version: i64 = cabinets::table.find(sn).select(cabinets::tags_version).first(conn)?;
    let rows: Vec<(String, Option<String>, Option<Fen>)> = lanes::table
        .left_join(products::table)
        .select((lanes::code, products::name.nullable(), products::price_fen.nullable()))
        .filter(lanes::sn.eq(sn))
        .order((lanes::door, lanes::position))
        .load(conn)?;
    let tags = rows
        .into_iter()
        .map(|(lane, name, price)| (lane, name.unwrap_or_default(), price.unwrap_or_default()))
        .collect();
    Ok((version, tags))
}

/// Store a door's calibration: (lane code, zero counts, counts per gram).
pub fn save_calibration(
    conn: &mut AnyConnection,
    sn: &str,
    cal: &[(String, i64, f64)],
    at: NaiveDateTime,
) -> DbResult<()> {
    for (code, zero, cpg) in cal {
        diesel::update(lanes::table.find((sn, code)))
            .set((
                lanes::zero_counts.eq(Some(*zero)),
                lanes::counts_per_g.eq(Some(*cpg)),
                lanes::calibrated_at.eq(Some(at)),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Move a cabinet from lifecycle status `from` to `to`, with one `status` event carrying the
/// facts it was decided on. False when it was no longer `from`.
pub fn set_status(
    conn: &mut AnyConnection,
    sn: &str,
    (from, to): (CabinetStatus, CabinetStatus),
    facts: &str,
    node_id: &str,
    at: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(cabinets::table.find(sn).filter(cabinets::status.eq(from)))
        .set((cabinets::status.eq(to), cabinets::updated_at.eq(at)))
        .execute(conn)?;
    if n == 0 {
        return Ok(false);
    }
    diesel::insert_into(cabinet_events::table)
        .values(NewCabinetEvent {
            sn: sn.to_string(),
            kind: CabinetEventKind::Status,
            from_state: Some(from.as_str().into()),
            to_state: Some(to.as_str().into()),
            detail: Some(facts.to_string()),
            node_id: node_id.to_string(),
            created_at: at,
        })
        .execute(conn)?;
    Ok(true)
}

/// How many cabinets have a known position (what the GEO index should hold).
pub fn count_positioned(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(cabinets::table
        .filter(cabinets::lat.is_not_null())
        .filter(cabinets::lng.is_not_null())
        .count()
        .get_result(conn)?)
}

/// Every cabinet with a position: serial number, latitude, longitude.
pub fn positions(conn: &mut AnyConnection) -> DbResult<Vec<(String, f64, f64)>> {
    let rows: Vec<(String, Option<f64>, Option<f64>)> = cabinets::table
        .select((cabinets::sn, cabinets::lat, cabinets::lng))
        .filter(cabinets::lat.is_not_null())
        .filter(cabinets::lng.is_not_null())
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(sn, lat, lng)| Some((sn, lat?, lng?))).collect())
}

/// Of these cabinets, those with at least one unit of an active product on a lane.
pub fn with_stock(conn: &mut AnyConnection, sns: &[String]) -> DbResult<Vec<String>> {
    Ok(lanes::table
        .inner_join(products::table)
        .select(lanes::sn)
        .filter(lanes::sn.eq_any(sns.to_vec()))
        .filter(lanes::stock.gt(0))
        .filter(products::active.eq(true))
        .distinct()
        .load(conn)?)
}

/// A lane with its product's unit weight and tolerance (grams), price (fen) and name, if it holds one.
pub type LaneWithProduct = (Lane, Option<(Grams, Grams, Fen, String)>);

/// Lanes in door and shelf order, each with its product's unit weight, tolerance, price and name.
pub fn lanes_with_products(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<LaneWithProduct>> {
    let rows: Vec<LaneWithProduct> = lanes::table
        .left_join(products::table)
        .select((
            Lane::as_select(),
            (products::unit_g, products::tolerance_g, products::price_fen, products::name).nullable(),
        ))
        .filter(lanes::sn.eq(sn))
        .order((lanes::door, lanes::position))
        .load(conn)?;
    Ok(rows)
}
