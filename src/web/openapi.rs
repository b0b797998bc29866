//! The mini-program API as OpenAPI 3.1 (`/api-docs/openapi.json`, Swagger UI at `/swagger-ui/`),
//! generated from the handlers' annotations so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{nearby, orders, shoppers};
use crate::domain::validation::FieldError;

struct ShopperToken;

impl Modify for ShopperToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "shopper",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Heft mini-program API",
        description = "What the WeChat and Alipay mini-programs call. Money is integer fen. Errors are \
                       `{\"error\": code, \"message\": text}`; refused fields are 422 with `fields`.",
        version = "1"
    ),
    paths(
        shoppers::login_wechat,
        shoppers::login_alipay,
        shoppers::me,
        nearby::nearby,
        orders::scan,
        orders::get,
        orders::history,
        orders::appeal,
        orders::cancel
    ),
    components(schemas(ErrorBody, FieldError)),
    modifiers(&ShopperToken),
    tags((name = "shopper", description = "Sign-in and account"), (name = "cabinets", description = "Finding a cabinet"))
)]
pub struct ApiDoc;

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(
        utoipa_swagger_ui::SwaggerUi::new("/swagger-ui/{_:.*}").url("/api-docs/openapi.json", ApiDoc::openapi()),
    );
}
