//! The catalogue API: products, what lanes sell by weight. Money is integer fen, weights grams.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, IdPath, Managers, Ops, page_limit};
use crate::db::models::Product;
use crate::db::products::{self, ProductError, ProductFilter};
use crate::domain::product::ProductInput;
use crate::domain::units::{Fen, Grams};
use crate::flows;

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProductOut {
    pub id: i64,
    pub name: String,
    pub barcode: String,
    /// Weight of one unit, in grams.
    pub unit_g: Grams,
    /// How far a unit may weigh from `unit_g` and still count as one.
    pub tolerance_g: Grams,
    pub price_fen: Fen,
    pub image_url: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductOut {
    fn from(p: Product) -> Self {
        ProductOut {
            id: p.id,
            name: p.name,
            barcode: p.barcode,
            unit_g: p.unit_g,
            tolerance_g: p.tolerance_g,
            price_fen: p.price_fen,
            image_url: p.image_url,
            active: p.active,
            created_at: p.created_at.and_utc(),
            updated_at: p.updated_at.and_utc(),
        }
    }
}

/// The answer to a PUT: the product, and the cabinets whose shelf labels must be sent again
/// because its name or price changed (empty when neither did).
#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProductUpdated {
    #[serde(flatten)]
    pub product: ProductOut,
    pub labels_pending: Vec<String>,
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::NotFound(id) => ApiError::NotFound(format!("product {id}")),
            ProductError::Invalid(fields) => ApiError::Invalid(fields),
            ProductError::InUse { id, lanes } => {
                let message = if lanes.is_empty() {
                    format!("product {id} is on a lane; deactivate it instead")
                } else {
                    let n = lanes.len();
                    format!("product {id} is on {n} lane{}; deactivate it instead", if n == 1 { "" } else { "s" })
                };
                let lanes: Vec<_> =
                    lanes.into_iter().map(|(sn, code)| serde_json::json!({"sn": sn, "code": code})).collect();
                ApiError::Conflict {
                    code: "product_in_use",
                    message,
                    detail: Some(serde_json::json!({"lanes": lanes})),
                }
            }
            ProductError::Db(e) => e.into(),
        }
    }
}

/// `POST /ops/products` (a [`ProductInput`]) → 201 with the product. Roles: admin, operator.
#[utoipa::path(
    post, path = "/ops/products", operation_id = "create_product", tag = "ops: catalogue", security(("operator" = [])), request_body = ProductInput,
    responses(
        (status = 201, description = "Created", body = ProductOut, links(("GetProduct" = (operation_id = "get_product", parameters(("id" = "$response.body#/id")))), ("ReplaceProduct" = (operation_id = "replace_product", parameters(("id" = "$response.body#/id")))), ("DeleteProduct" = (operation_id = "delete_product", parameters(("id" = "$response.body#/id")))))),
        (status = 422, description = "A field is refused (tolerance not under half the unit weight, a barcode in use, …)", body = crate::web::error::ErrorBody),
    )
)]
pub async fn create(ops: Ops<Managers>, body: web::Json<ProductInput>) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let created = flows::catalogue::create(&ops.state.svc.db, input).await?;
    tracing::info!(by = %ops.user.username, product = created.id, barcode = %created.barcode, "product created");
    Ok(HttpResponse::Created().json(ProductOut::from(created)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub active: Option<bool>,
    /// Part of the name or of the barcode.
    pub q: Option<String>,
    /// Keyset paging: the `next_after` of the previous page.
    pub after: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductPage {
    pub products: Vec<ProductOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// `GET /ops/products?active=&q=&after=&limit=` → products by id, paged. Roles: any.
#[utoipa::path(
    get, path = "/ops/products", operation_id = "list_products", tag = "ops: catalogue", security(("operator" = [])), params(ListQuery),
    responses((status = 200, description = "A page of products", body = ProductPage))
)]
pub async fn list(ops: Ops<AnyRole>, q: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let filter = ProductFilter { active: q.active, q: q.q, after: q.after };
    let rows = ops.read(move |c| products::list(c, &filter, limit)).await?;
    let next_after = (rows.len() as i64 == limit).then(|| rows.last().map(|p| p.id)).flatten();
    Ok(HttpResponse::Ok().json(ProductPage { products: rows.into_iter().map(ProductOut::from).collect(), next_after }))
}

/// `GET /ops/products/{id}` → the product. Roles: any.
#[utoipa::path(
    get, path = "/ops/products/{id}", operation_id = "get_product", tag = "ops: catalogue", security(("operator" = [])), params(IdPath),
    responses((status = 200, description = "The product", body = ProductOut))
)]
pub async fn get(ops: Ops<AnyRole>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let found = ops.read(move |c| products::find(c, id)).await?;
    let product = found.ok_or_else(|| ApiError::NotFound(format!("product {id}")))?;
    Ok(HttpResponse::Ok().json(ProductOut::from(product)))
}

/// `PUT /ops/products/{id}` (a whole [`ProductInput`]) → the product and `labels_pending`.
/// Roles: admin, operator. `active: false` takes it off sale without deleting it.
#[utoipa::path(
    put, path = "/ops/products/{id}", operation_id = "replace_product", tag = "ops: catalogue", security(("operator" = [])), params(IdPath),
    request_body = ProductInput,
    responses(
        (status = 200, description = "Stored; `labels_pending` names the cabinets to relabel", body = ProductUpdated),
        (status = 422, description = "A field is refused", body = crate::web::error::ErrorBody),
    )
)]
pub async fn replace(
    ops: Ops<Managers>,
    path: web::Path<i64>,
    body: web::Json<ProductInput>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let input = body.into_inner();
    let (product, sns, effects) = flows::catalogue::replace(&ops.state.svc.db, id, input).await?;
    tracing::info!(by = %ops.user.username, product = id, relabel = sns.len(), "product updated");
    ops.state.svc.effects.run(effects);
    Ok(HttpResponse::Ok().json(ProductUpdated { product: product.into(), labels_pending: sns }))
}

/// `DELETE /ops/products/{id}` → 204. Roles: admin, operator. A product on a lane cannot be
/// deleted (409 `product_in_use`, naming the lanes); deactivate it instead.
#[utoipa::path(
    delete, path = "/ops/products/{id}", operation_id = "delete_product", tag = "ops: catalogue", security(("operator" = [])), params(IdPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "product_in_use, with the lanes in `detail.lanes`", body = crate::web::error::ErrorBody),
    )
)]
pub async fn delete(ops: Ops<Managers>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    flows::catalogue::delete(&ops.state.svc.db, id).await?;
    tracing::info!(by = %ops.user.username, product = id, "product deleted");
    Ok(HttpResponse::NoContent().finish())
}
