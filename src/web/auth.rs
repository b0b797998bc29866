//! Operator sign-in: `POST /ops/auth/login` issues a JWT (HS256, `iss: "heft-ops"`), and the
//! [`OpsUser`] extractor admits a request that carries one. Each route then states the roles it
//! allows with [`OpsUser::require`].
//!
//! Tokens are checked against the database on every request (one primary-key read), so disabling
//! an operator or changing their role takes effect at once rather than when the token expires.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::bearer::{Hs256, TokenError, bearer};
use super::{ApiError, AppState};
use crate::config::AuthConfig;
use crate::db::operators;
use crate::domain::operator::{self, Role};
use crate::flows;
use crate::secrets::{self, SealKey};

/// Every role: reading the fleet and the catalogue.
pub const ANY_ROLE: &[Role] = &[Role::Admin, Role::Operator, Role::Restocker, Role::Maintainer];
/// Changing the catalogue and the fleet's configuration.
pub const MANAGERS: &[Role] = &[Role::Admin, Role::Operator];
/// Operator accounts.
pub const ADMINS: &[Role] = &[Role::Admin];
/// Calibrating lanes.
pub const CALIBRATORS: &[Role] = &[Role::Admin, Role::Operator, Role::Maintainer];
/// Opening a door to restock it.
pub const RESTOCKERS: &[Role] = &[Role::Admin, Role::Operator, Role::Restocker];

/// The `iss` of every token Heft issues; tokens with another are refused.
pub const ISSUER: &str = "heft-ops";
/// Label the token key is derived under when `auth.jwt_secret` is empty.
const DERIVE_LABEL: &str = "heft ops jwt v1";
/// The window `auth.login_attempts_per_minute` counts over.
const LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// What a token says. `sub` is the operator id as a string, as JWT wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub role: Role,
    /// Unix seconds.
    pub iat: i64,
    /// Unix seconds.
    pub exp: i64,
    pub iss: String,
}

impl Claims {
    /// Claims for an operator, valid for `ttl_s` from `now`.
    pub fn new(id: i64, username: &str, role: Role, now: i64, ttl_s: u64) -> Claims {
        Claims {
            sub: id.to_string(),
            name: username.to_string(),
            role,
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX)),
            iss: ISSUER.into(),
        }
    }
}

/// The key tokens are signed with: `auth.jwt_secret`, or when it is empty
/// HMAC-SHA256(seal key, "heft ops jwt v1"), which every node sharing the seal key agrees on.
pub fn jwt_secret(config: &AuthConfig, seal: &SealKey) -> Vec<u8> {
    if config.jwt_secret.is_empty() {
        seal.derive(DERIVE_LABEL).to_vec()
    } else {
        config.jwt_secret.as_bytes().to_vec()
    }
}

/// Sign `claims` with `secret` (HS256). Public so tests and tools can make tokens, e.g. expired
/// ones.
pub fn issue_token(secret: &[u8], claims: &Claims) -> Result<String, ApiError> {
    Hs256::new(secret, ISSUER).sign(claims).map_err(ApiError::internal)
}

/// Signs and checks tokens.
pub struct Tokens {
    jwt: Hs256,
    ttl_s: u64,
}

impl Tokens {
    pub fn new(config: &AuthConfig, seal: &SealKey) -> Tokens {
        Tokens { jwt: Hs256::new(&jwt_secret(config, seal), ISSUER), ttl_s: config.token_ttl_s }
    }

    /// A token for an operator, and when it expires.
    pub fn issue(&self, id: i64, username: &str, role: Role) -> Result<(String, DateTime<Utc>), ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims::new(id, username, role, now, self.ttl_s);
        let token = self.jwt.sign(&claims).map_err(ApiError::internal)?;
        let expires_at = DateTime::<Utc>::from_timestamp(claims.exp, 0)
            .ok_or_else(|| ApiError::internal(format!("token expiry {} out of range", claims.exp)))?;
        Ok((token, expires_at))
    }

    /// The claims of a token signed with our key, not expired, from our issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.jwt.verify(token, Utc::now().timestamp())
    }
}

/// Login attempts per username in the last minute, on this node. Attempts are counted whether
/// they succeed or not, so guessing is capped at `auth.login_attempts_per_minute` a minute.
pub struct LoginLimiter {
    per_minute: usize,
    attempts: Mutex<Attempts>,
}

struct Attempts {
    by_user: HashMap<String, VecDeque<Instant>>,
    last_sweep: Instant,
}

/// Past this many usernames tracked, idle ones are swept (at most once a second), so a spray
/// of made-up usernames cannot grow the map without bound.
const SWEEP_ABOVE: usize = 1024;

impl LoginLimiter {
    pub fn new(per_minute: u32) -> LoginLimiter {
        LoginLimiter {
            per_minute: per_minute as usize,
            attempts: Mutex::new(Attempts { by_user: HashMap::new(), last_sweep: Instant::now() }),
        }
    }

    /// Count an attempt for `username` at `now`; false when the minute's allowance is used up
    /// (the refused attempt is not counted, so a steady stream is let through at the limit).
    pub fn allow(&self, username: &str, now: Instant) -> bool {
        // A poisoned lock only means another request panicked mid-update; the counts are still
        // usable.
        let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < LIMIT_WINDOW;
        if a.by_user.len() > SWEEP_ABOVE && now.saturating_duration_since(a.last_sweep) >= Duration::from_secs(1) {
            a.by_user.retain(|_, q| q.back().is_some_and(fresh));
            a.last_sweep = now;
        }
        let q = a.by_user.entry(username.to_string()).or_default();
        while q.front().is_some_and(|t| !fresh(t)) {
            q.pop_front();
        }
        if q.len() >= self.per_minute {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// What the auth routes and the extractor share, one per node.
pub struct AuthState {
    pub tokens: Tokens,
    /// Mini-program (shopper) tokens: another issuer, another key.
    pub shoppers: super::shoppers::ShopperTokens,
    pub limiter: LoginLimiter,
    pub min_password_len: usize,
    hashing: Arc<Semaphore>,
}

impl AuthState {
    pub fn new(config: &AuthConfig, seal: &SealKey) -> AuthState {
        AuthState {
            tokens: Tokens::new(config, seal),
            shoppers: super::shoppers::ShopperTokens::new(config, seal),
            limiter: LoginLimiter::new(config.login_attempts_per_minute),
            min_password_len: config.min_password_len,
            hashing: Arc::new(Semaphore::new(config.max_concurrent_hashes)),
        }
    }

    /// Run argon2 work on the blocking pool, at most `auth.max_concurrent_hashes` at once.
    async fn hashing<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let permit =
            self.hashing.clone().acquire_owned().await.map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        // The permit moves into the task: if the client goes away the hash still runs to the end,
        // and it must still count against the limit until then.
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|_| ApiError::internal("password hashing task failed"))
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        self.hashing(move || secrets::hash_password(&password)).await?.map_err(ApiError::internal)
    }

    /// Whether `password` matches `phc`.
    pub async fn verify_password(&self, password: String, phc: String) -> Result<bool, ApiError> {
        self.hashing(move || secrets::verify_password(&password, &phc)).await
    }
}

/// The operator a request is made by, as the database says now.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// `METHOD /route/{pattern}`, for the message when a role is refused.
    pub route: String,
}

impl OpsUser {
    /// `Ok` when this operator's role is one of `allowed`, else 403 naming the roles that are.
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!("role {} may not {}; allowed: {}", self.role, self.route, names.join(", "))))
    }
}

impl FromRequest for OpsUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<OpsUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let route = format!("{} {}", req.method(), req.match_pattern().unwrap_or_else(|| req.path().to_string()));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("AppState missing"))?;
            Ok(signed_in(&state, &token?, route).await?.0)
        })
    }
}

/// The operator a token names, as the database says now, with the token's claims. The role and
/// name are taken from the database, not the token: a change made since the login counts at once.
pub async fn signed_in(state: &AppState, token: &str, route: String) -> Result<(OpsUser, Claims), ApiError> {
    let claims = state.auth.tokens.verify(token)?;
    let id: i64 = claims.sub.parse().map_err(|_| TokenError::Invalid)?;
    let op = state.svc.db.run(move |c| operators::find(c, id)).await?;
    let op = op.ok_or(TokenError::Invalid)?;
    if !op.active {
        return Err(ApiError::Unauthorized("account disabled".into()));
    }
    Ok((OpsUser { id: op.id, username: op.username, role: op.role, route }, claims))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = OperatorLoginRequest)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 32)]
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorRef {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = OperatorLoginResponse)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub operator: OperatorRef,
}

const WRONG_CREDENTIALS: &str = "wrong username or password";

/// `POST /ops/auth/login` {username, password} → a token. Roles: none needed (this is how one
/// gets a token).
///
/// An unknown username and a wrong password get the same answer in about the same time (the
/// password is checked against a dummy hash), so the answer does not tell which usernames exist.
/// A disabled account is said to be so only to someone who knows its password.
#[utoipa::path(
    post, path = "/ops/auth/login", tag = "ops: operators", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "Wrong username or password, or the account is disabled", body = crate::web::error::ErrorBody),
        (status = 429, description = "too_many_attempts for this username; see `Retry-After`", body = crate::web::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn login(state: web::Data<AppState>, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let username = operator::normalize_username(&username);
    // No account can have such a name, and skipping the hash keeps junk from costing CPU; the
    // rules are public, so the shortcut reveals nothing.
    if operator::validate_username(&username).is_err() || password.chars().count() > operator::PASSWORD_MAX_CHARS {
        return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
    }
    if !state.auth.limiter.allow(&username, Instant::now()) {
        return Err(ApiError::TooManyRequests {
            code: "too_many_attempts",
            message: format!("too many login attempts for {username}; wait a minute and try again"),
            retry_after_s: LIMIT_WINDOW.as_secs(),
        });
    }
    let lookup = username.clone();
    let found = state.svc.db.run(move |c| operators::find_by_username(c, &lookup)).await?;
    let phc = found.as_ref().map_or_else(|| secrets::DUMMY_PASSWORD_HASH.to_string(), |op| op.password_hash.clone());
    let matches = state.auth.verify_password(password, phc).await?;
    let op = match found {
        Some(op) if matches => op,
        _ => {
            tracing::info!(%username, "ops login refused");
            return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
        }
    };
    if !op.active {
        return Err(ApiError::Unauthorized("account disabled".into()));
    }
    let role = op.role;
    let id = op.id;
    flows::operators::signed_in(&state.svc.db, id).await?;
    let (token, expires_at) = state.auth.tokens.issue(op.id, &op.username, role)?;
    tracing::info!(operator = %op.username, %role, "ops login");
    Ok(HttpResponse::Ok().json(LoginResponse {
        token,
        expires_at,
        operator: OperatorRef { id: op.id, username: op.username, role },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> AuthConfig {
        AuthConfig {
            jwt_secret: secret.into(),
            token_ttl_s: 3600,
            shopper_token_ttl_s: 3600,
            min_password_len: 10,
            login_attempts_per_minute: 3,
            max_concurrent_hashes: 1,
        }
    }

    fn seal() -> SealKey {
        SealKey::from_base64(&secrets::new_frame_key().1).expect("seal key")
    }

    #[test]
    fn shopper_and_ops_tokens_are_not_interchangeable() {
        for secret in ["", "0123456789abcdef0123456789abcdef"] {
            let (ops, shoppers) = (
                Tokens::new(&config(secret), &seal()),
                super::super::shoppers::ShopperTokens::new(&config(secret), &seal()),
            );
            let (ops_token, _) = ops.issue(1, "alice", Role::Admin).expect("ops token");
            let (shopper_token, _) = shoppers.issue(1, crate::pay::Channel::Wechat).expect("shopper token");
            assert_eq!(shoppers.verify(&shopper_token).expect("valid").sub, "1");
            assert_eq!(shoppers.verify(&ops_token), Err(TokenError::Invalid), "secret {secret:?}");
            assert_eq!(ops.verify(&shopper_token), Err(TokenError::Invalid), "secret {secret:?}");
        }
    }

    #[test]
    fn tokens_round_trip() {
        let t = Tokens::new(&config(""), &seal());
        let (token, exp) = t.issue(7, "alice", Role::Restocker).expect("issue");
        let c = t.verify(&token).expect("verifies");
        assert_eq!((c.sub.as_str(), c.name.as_str(), c.role, c.iss.as_str()), ("7", "alice", Role::Restocker, ISSUER));
        assert_eq!(c.exp, exp.timestamp());
        assert_eq!(c.exp - c.iat, 3600);
    }

    #[test]
    fn derived_secret_is_shared_by_nodes_with_the_seal_key() {
        let key = seal();
        let a = Tokens::new(&config(""), &key);
        let b = Tokens::new(&config(""), &key);
        let (token, _) = a.issue(1, "root", Role::Admin).expect("issue");
        assert!(b.verify(&token).is_ok());
        assert_eq!(Tokens::new(&config(""), &seal()).verify(&token), Err(TokenError::Invalid));
        let explicit = Tokens::new(&config("0123456789abcdef0123456789abcdef"), &key);
        assert_eq!(explicit.verify(&token), Err(TokenError::Invalid), "a set secret wins over the seal key");
        assert_eq!(jwt_secret(&config(""), &key), key.derive("heft ops jwt v1").to_vec());
    }

    #[test]
    fn refusals() {
        let key = seal();
        let cfg = config("");
        let t = Tokens::new(&cfg, &key);
        let secret = jwt_secret(&cfg, &key);
        let now = Utc::now().timestamp();
        let expired = issue_token(&secret, &Claims::new(1, "a", Role::Admin, now - 7200, 3600)).expect("sign");
        assert_eq!(t.verify(&expired), Err(TokenError::Expired));
        let forged_expired = issue_token(b"another key", &Claims::new(1, "a", Role::Admin, now - 7200, 3600));
        assert_eq!(t.verify(&forged_expired.expect("sign")), Err(TokenError::Invalid));
        let other_issuer = Claims { iss: "someone-else".into(), ..Claims::new(1, "a", Role::Admin, now, 60) };
        assert_eq!(t.verify(&issue_token(&secret, &other_issuer).expect("sign")), Err(TokenError::Invalid));
        assert_eq!(t.verify("garbage"), Err(TokenError::Invalid));
        assert_eq!(t.verify("a.b.c"), Err(TokenError::Invalid));
        // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.";
        assert_eq!(t.verify(none), Err(TokenError::Invalid));
    }

    #[test]
    fn limiter_counts_per_username_per_minute() {
        let l = LoginLimiter::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow("alice", t0)));
        assert!(!l.allow("alice", t0 + Duration::from_secs(59)));
        assert!(l.allow("bob", t0), "another username has its own allowance");
        assert!(l.allow("alice", t0 + Duration::from_secs(60)), "the window slides");
    }

    #[test]
    fn limiter_forgets_idle_usernames() {
        let l = LoginLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            assert!(l.allow(&format!("user{i}"), t0));
        }
        assert!(l.allow("late", t0 + Duration::from_secs(61)));
        let tracked = l.attempts.lock().expect("lock").by_user.len();
        assert_eq!(tracked, 1, "only the fresh username is left");
    }

    #[test]
    fn require_names_the_allowed_roles() {
        let u = OpsUser { id: 3, username: "r".into(), role: Role::Restocker, route: "POST /ops/products".into() };
        assert!(u.require(ANY_ROLE).is_ok());
        let e = u.require(MANAGERS).expect_err("refused");
        assert_eq!(e.to_string(), "role restocker may not POST /ops/products; allowed: admin, operator");
        assert_eq!(e.code(), "forbidden");
    }
}
