//! Shopper sign-in from the mini-programs: `POST /api/v1/auth/wechat` (a `wx.login` code) and
//! `POST /api/v1/auth/alipay` (a `my.getAuthCode` code). The code is exchanged with the platform
//! for the shopper's id; the user and their account are found or created in one transaction; the
//! answer carries a JWT the mini-program sends as `Authorization: Bearer …`.
//!
//! Shopper tokens have their own issuer and key: an ops token is never a shopper token, nor the
//! reverse.

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::bearer::{Hs256, TokenError};
use super::{ApiError, AppState};
use crate::config::AuthConfig;
use crate::db::models::{Account, User};
use crate::db::{self, DbError, users};
use crate::domain::account;
use crate::domain::units::Fen;
use crate::domain::validation::FieldError;
use crate::pay::{Channel, PayError};
use crate::secrets::SealKey;

pub const ISSUER: &str = "heft-shopper";
const DERIVE_LABEL: &str = "heft shopper jwt v1";
/// Longest login code accepted (platform codes are 32–64 characters).
const MAX_CODE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShopperClaims {
    /// The user id.
    pub sub: String,
    /// `wechat` or `alipay`.
    pub channel: Channel,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signs and checks shopper tokens.
pub struct ShopperTokens {
    jwt: Hs256,
    ttl_s: u64,
}

impl ShopperTokens {
    /// The key is `auth.jwt_secret` run through a label, or derived from the seal key: either
    /// way distinct from the ops key, and the same on every node.
    pub fn new(config: &AuthConfig, seal: &SealKey) -> ShopperTokens {
        let secret = if config.jwt_secret.is_empty() {
            seal.derive(DERIVE_LABEL).to_vec()
        } else {
            crate::secrets::hmac_sha256(config.jwt_secret.as_bytes(), DERIVE_LABEL.as_bytes()).to_vec()
        };
        ShopperTokens { jwt: Hs256::new(&secret, ISSUER), ttl_s: config.shopper_token_ttl_s }
    }

    pub fn issue(&self, user_id: i64, channel: Channel) -> Result<(String, DateTime<Utc>), ApiError> {
        let now = Utc::now().timestamp();
        let claims = ShopperClaims {
            sub: user_id.to_string(),
            channel,
            iat: now,
            exp: now.saturating_add(i64::try_from(self.ttl_s).unwrap_or(i64::MAX)),
            iss: ISSUER.into(),
        };
        let token = self.jwt.sign(&claims).map_err(ApiError::internal)?;
        let expires_at = DateTime::<Utc>::from_timestamp(claims.exp, 0)
            .ok_or_else(|| ApiError::internal(format!("token expiry {} out of range", claims.exp)))?;
        Ok((token, expires_at))
    }

    pub fn verify(&self, token: &str) -> Result<ShopperClaims, TokenError> {
        self.jwt.verify(token, Utc::now().timestamp())
    }
}

/// A signed-in shopper, read afresh from the database on each request.
#[derive(Debug, Clone)]
pub struct Shopper {
    pub user: User,
    pub account: Account,
}

impl FromRequest for Shopper {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Shopper, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = super::bearer::bearer(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("app state missing"))?;
            let claims = state.auth.shoppers.verify(&token?)?;
            let id: i64 = claims.sub.parse().map_err(|_| TokenError::Invalid)?;
            let (user, account) = state
                .svc
                .db
                .run(move |c| users::find(c, id))
                .await?
                .ok_or(ApiError::Unauthorized(TokenError::Invalid.to_string()))?;
            Ok(Shopper { user, account })
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The code from `wx.login` / `my.getAuthCode`.
    #[schema(min_length = 1, max_length = 256)]
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub user_id: i64,
    pub channel: Channel,
    /// Payment channels bound: `wechat_payscore`, `alipay_fund_auth`.
    pub channels: Vec<String>,
    #[schema(value_type = i64)]
    pub debt_fen: Fen,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
}

impl AccountView {
    fn new(user: &User, account: &Account) -> AccountView {
        AccountView {
            user_id: user.id,
            channel: user.channel,
            channels: account::channels(&account.channels).into_iter().map(String::from).collect(),
            debt_fen: account.debt_fen,
            blocked: account.blocked,
            created_at: user.created_at.and_utc(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// True when this login created the shopper.
    pub created: bool,
    pub account: AccountView,
}

/// Sign in with a `wx.login` code.
///
/// Finds or creates the shopper and their account (one transaction) and binds WeChat Pay Score.
#[utoipa::path(
    post, path = "/api/v1/auth/wechat", tag = "shopper", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "The platform refused the code (wrong, expired or used)", body = crate::web::error::ErrorBody),
        (status = 422, description = "No code, or too long", body = crate::web::error::ErrorBody),
        (status = 503, description = "The platform or the database did not answer; try again", body = crate::web::error::ErrorBody),
    )
)]
pub async fn login_wechat(state: web::Data<AppState>, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    login(state, Channel::Wechat, body.into_inner()).await
}

/// Sign in with a `my.getAuthCode` code.
///
/// Finds or creates the shopper and their account (one transaction) and binds Alipay fund-auth.
#[utoipa::path(
    post, path = "/api/v1/auth/alipay", tag = "shopper", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "The platform refused the code", body = crate::web::error::ErrorBody),
        (status = 422, description = "No code, or too long", body = crate::web::error::ErrorBody),
        (status = 503, description = "The platform or the database did not answer; try again", body = crate::web::error::ErrorBody),
    )
)]
pub async fn login_alipay(state: web::Data<AppState>, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    login(state, Channel::Alipay, body.into_inner()).await
}

async fn login(state: web::Data<AppState>, channel: Channel, body: LoginRequest) -> Result<HttpResponse, ApiError> {
    let code = body.code.trim().to_string();
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "code",
            "invalid",
            format!("a login code of 1 to {MAX_CODE_LEN} characters"),
        )]));
    }
    let platform_user = state.svc.payments.get(channel).login(&code).await.map_err(|e| match e {
        PayError::Declined { message, .. } => {
            ApiError::Unauthorized(format!("the {channel} login code was refused: {message}"))
        }
        PayError::Retryable(m) => ApiError::Unavailable(format!("{channel} login is unavailable, try again: {m}")),
        PayError::Permanent(m) => ApiError::Platform(format!("{channel} login failed: {m}")),
    })?;
    let bind = match channel {
        Channel::Wechat => account::WECHAT_PAYSCORE,
        Channel::Alipay => account::ALIPAY_FUND_AUTH,
    };
    let found = state
        .svc
        .db
        .write(move |c| users::login(c, channel, &platform_user.uid, platform_user.unionid.as_deref(), bind, db::now()))
        .await
        .map_err(|e: DbError| ApiError::Unavailable(format!("sign-in could not be saved, try again: {e}")))?;
    let (token, expires_at) = state.auth.shoppers.issue(found.user.id, channel)?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        token,
        expires_at,
        created: found.created,
        account: AccountView::new(&found.user, &found.account),
    }))
}

/// The signed-in shopper's account: bound channels, debt, whether they may buy.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "shopper", security(("shopper" = [])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "No token, or a wrong or expired one", body = crate::web::error::ErrorBody),
    )
)]
pub async fn me(shopper: Shopper) -> HttpResponse {
    HttpResponse::Ok().json(AccountView::new(&shopper.user, &shopper.account))
}
