//! The catalogue: what lanes sell, by weight.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;

use super::models::{Product, ProductValues};
use super::schema::{cabinets, lanes, products};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::product::ProductInput;
use crate::domain::validation::FieldError;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("product {0} not found")]
    NotFound(i64),
    #[error("product is invalid")]
    Invalid(Vec<FieldError>),
    /// Lanes hold the product: (sn, lane code) of each, sorted. Empty when the database refused
    /// the delete for a lane assigned after the check.
    #[error("product {id} is on {} lanes", lanes.len())]
    InUse { id: i64, lanes: Vec<(String, String)> },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ProductError {
    fn from(e: diesel::result::Error) -> Self {
        ProductError::Db(e.into())
    }
}

fn duplicate_barcode(barcode: &str) -> ProductError {
    ProductError::Invalid(vec![FieldError::new(
        "barcode",
        "duplicate",
        format!("another product already has barcode {barcode}"),
    )])
}

/// The barcode is the only unique key besides the id, so a unique violation is a taken barcode
/// (another request stored it between our check and our write).
fn map_write(e: diesel::result::Error, barcode: &str) -> ProductError {
    let e = DbError::from(e);
    if e.is_unique_violation() { duplicate_barcode(barcode) } else { e.into() }
}

/// The stored form of a validated input: the name without surrounding blanks, no empty URL.
fn values(input: &ProductInput, at: NaiveDateTime) -> ProductValues {
    ProductValues {
        name: input.name.trim().to_string(),
        barcode: input.barcode.clone(),
        unit_g: input.unit_g,
        tolerance_g: input.tolerance_g,
        price_fen: input.price_fen,
        image_url: input.image_url.clone().filter(|u| !u.is_empty()),
        active: input.active,
        updated_at: at,
    }
}

fn barcode_taken(conn: &mut AnyConnection, barcode: &str, except: Option<i64>) -> DbResult<bool> {
    let mut q = products::table.select(products::id).filter(products::barcode.eq(barcode)).into_boxed();
    if let Some(id) = except {
        q = q.filter(products::id.ne(id));
    }
    Ok(q.first::<i64>(conn).optional()?.is_some())
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Product>> {
    Ok(products::table.find(id).select(Product::as_select()).first(conn).optional()?)
}

/// Store a new product, validated by the caller (inside a write transaction).
pub fn create(conn: &mut AnyConnection, input: &ProductInput, at: NaiveDateTime) -> Result<Product, ProductError> {
    // Checked first because on PostgreSQL a failed insert would poison the caller's transaction.
    if barcode_taken(conn, &input.barcode, None)? {
        return Err(duplicate_barcode(&input.barcode));
    }
    let row = (values(input, at), products::created_at.eq(at));
    let created = crate::on_backend!(conn, |c| {
        diesel::insert_into(products::table).values(row).returning(Product::as_returning()).get_result(c)
    });
    created.map_err(|e| map_write(e, &input.barcode))
}

/// Replace a product, validated by the caller (inside a write transaction). When the name or the
/// price changed, the label version of every cabinet with a lane holding it is bumped in the same
/// transaction; returns those cabinets, sorted, for their actors to resend the labels.
pub fn update(
    conn: &mut AnyConnection,
    id: i64,
    input: &ProductInput,
    at: NaiveDateTime,
) -> Result<(Product, Vec<String>), ProductError> {
    let before = find(conn, id)?.ok_or(ProductError::NotFound(id))?;
    if barcode_taken(conn, &input.barcode, Some(id))? {
        return Err(duplicate_barcode(&input.barcode));
    }
    let new = values(input, at);
    let relabel = new.name != before.name || new.price_fen != before.price_fen;
    let updated = crate::on_backend!(conn, |c| {
        diesel::update(products::table.find(id)).set(&new).returning(Product::as_returning()).get_result(c)
    });
    let product = updated.map_err(|e| map_write(e, &input.barcode))?;
    let sns = if relabel { relabel_cabinets(conn, id, at)? } else { Vec::new() };
    Ok((product, sns))
}

/// Labels need sending again to every cabinet with a lane holding this product; returns those
/// cabinets.
fn relabel_cabinets(conn: &mut AnyConnection, product_id: i64, at: NaiveDateTime) -> DbResult<Vec<String>> {
    let mut sns: Vec<String> =
        lanes::table.select(lanes::sn).filter(lanes::product_id.eq(Some(product_id))).distinct().load(conn)?;
    sns.sort();
    if !sns.is_empty() {
        diesel::update(cabinets::table.filter(cabinets::sn.eq_any(sns.clone())))
            .set((cabinets::tags_version.eq(cabinets::tags_version + 1), cabinets::updated_at.eq(at)))
            .execute(conn)?;
    }
    Ok(sns)
}

/// Lanes holding a product: (sn, lane code), sorted.
pub fn lanes_with(conn: &mut AnyConnection, id: i64) -> DbResult<Vec<(String, String)>> {
    Ok(lanes::table
        .select((lanes::sn, lanes::code))
        .filter(lanes::product_id.eq(Some(id)))
        .order((lanes::sn.asc(), lanes::code.asc()))
        .load(conn)?)
}

/// Delete a product no lane holds (call inside a write transaction). One that is on a lane must
/// be deactivated instead: its lanes' configuration and the sales records name it.
pub fn delete(conn: &mut AnyConnection, id: i64) -> Result<(), ProductError> {
    if find(conn, id)?.is_none() {
        return Err(ProductError::NotFound(id));
    }
    let held = lanes_with(conn, id)?;
    if !held.is_empty() {
        return Err(ProductError::InUse { id, lanes: held });
    }
    match diesel::delete(products::table.find(id)).execute(conn) {
        Ok(_) => Ok(()),
        // A lane took the product between the check and the delete; the foreign key refused it.
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            Err(ProductError::InUse { id, lanes: Vec::new() })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Clone)]
pub struct ProductFilter {
    pub active: Option<bool>,
    /// Part of the name (ASCII letters without case) or of the barcode.
    pub q: Option<String>,
    /// Keyset paging: only ids after this one.
    pub after: Option<i64>,
}

/// `%`, `_` and `\` in a search are literal.
fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for ch in q.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// Ordered by id.
pub fn list(conn: &mut AnyConnection, f: &ProductFilter, limit: i64) -> DbResult<Vec<Product>> {
    let mut q = products::table.select(Product::as_select()).into_boxed();
    if let Some(active) = f.active {
        q = q.filter(products::active.eq(active));
    }
    if let Some(text) = f.q.as_deref().filter(|t| !t.is_empty()) {
        // lower() on both sides: SQLite's LIKE ignores ASCII case and PostgreSQL's does not; this
        // makes them agree.
        let pattern = like_pattern(&text.to_lowercase());
        q = q.filter(
            lower(products::name)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(products::barcode).like(pattern).escape('\\')),
        );
    }
    if let Some(after) = f.after {
        q = q.filter(products::id.gt(after));
    }
    Ok(q.order(products::id.asc()).limit(limit).load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("cola"), "%cola%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
