//! The catalogue: products are checked (`domain::product::validate`) before they are stored, and a
//! change of name or price sends new shelf labels to every cabinet selling the product.

use crate::db::models::Product;
use crate::db::products::{self, ProductError};
use crate::db::{self, Db};
use crate::domain::product::{ProductInput, validate};

/// Store a new product.
pub async fn create(db: &Db, input: ProductInput) -> Result<Product, ProductError> {
    validate(&input).map_err(ProductError::Invalid)?;
    db.write(move |c| products::create(c, &input, db::now())).await
}

/// Replace a product; the cabinets whose labels are to be sent again (their actors are told
/// after the commit, so they read the new labels).
pub async fn replace(db: &Db, id: i64, input: ProductInput) -> Result<(Product, Vec<String>), ProductError> {
    validate(&input).map_err(ProductError::Invalid)?;
    db.write(move |c| products::update(c, id, &input, db::now())).await
}

/// Delete a product no lane holds.
pub async fn delete(db: &Db, id: i64) -> Result<(), ProductError> {
    db.write(move |c| products::delete(c, id)).await
}
