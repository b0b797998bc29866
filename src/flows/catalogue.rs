//! The catalogue: products are checked (`domain::product::validate`) before they are stored, and a
//! change of name or price sends new shelf labels to every cabinet selling the product.

use crate::db::models::Product;
use crate::db::products::{self, ProductError};
use crate::db::{self, Db};
use crate::domain::product::{ProductInput, validate};
use crate::flows::Effects;

/// Store a new product.
pub async fn create(db: &Db, input: ProductInput) -> Result<Product, ProductError> {
    validate(&input).map_err(ProductError::Invalid)?;
    db.write(move |c| products::create(c, &input, db::now())).await
}

/// Replace a product, and the cabinets selling it, which send new labels: their actors are told
/// after the commit, so they read the new ones.
pub async fn replace(db: &Db, id: i64, input: ProductInput) -> Result<(Product, Vec<String>, Effects), ProductError> {
    validate(&input).map_err(ProductError::Invalid)?;
    let (product, sns) = db.write(move |c| products::update(c, id, &input, db::now())).await?;
    let effects = Effects::setup_changed(sns.clone());
    Ok((product, sns, effects))
}

/// Delete a product no lane holds.
pub async fn delete(db: &Db, id: i64) -> Result<(), ProductError> {
    db.write(move |c| products::delete(c, id)).await
}
