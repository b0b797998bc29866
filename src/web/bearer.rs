//! Bearer tokens as requests carry them (`Authorization: Bearer <jwt>`), for operators and
//! shoppers alike.

use actix_web::HttpRequest;

use super::ApiError;

/// Why a presented token is refused. Each maps to its own 401 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

/// The request's bearer token.
pub fn bearer(req: &HttpRequest) -> Result<String, TokenError> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION).ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Invalid);
    }
    Ok(token.trim().to_string())
}
