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

/// HS256 JSON Web Tokens, the only kind Heft issues (ops and shopper sessions). Written here
/// rather than taken from `jsonwebtoken`, whose backends bring either the `rsa` crate
/// (RUSTSEC-2023-0071) or a C build (aws-lc) for one HMAC.
pub struct Hs256 {
    key: Vec<u8>,
    issuer: &'static str,
}

/// Claims every token must carry, whatever else it holds.
#[derive(serde::Deserialize)]
struct Registered {
    exp: i64,
    iss: String,
    #[allow(dead_code)] // required present; the caller reads it
    sub: String,
}

impl Hs256 {
    pub fn new(key: &[u8], issuer: &'static str) -> Hs256 {
        Hs256 { key: key.to_vec(), issuer }
    }

    fn mac(&self, signed_part: &str) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        // HMAC takes a key of any length.
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(signed_part.as_bytes());
        mac
    }

    /// `header.claims.signature`, each Base64url without padding.
    pub fn sign<C: serde::Serialize>(&self, claims: &C) -> Result<String, serde_json::Error> {
        use base64::Engine;
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let signed_part = format!("{header}.{}", b64.encode(serde_json::to_vec(claims)?));
        let signature = b64.encode(self.mac(&signed_part).finalize().into_bytes());
        Ok(format!("{signed_part}.{signature}"))
    }

    /// The claims of a token signed with our key, by our issuer, with `exp`, `iss` and `sub`,
    /// not expired at `now` (no leeway: nodes keep NTP time, and a token lives for hours). The
    /// signature is checked first, so a forged old token is `Invalid`, not `Expired`.
    pub fn verify<C: serde::de::DeserializeOwned>(&self, token: &str, now: i64) -> Result<C, TokenError> {
        use base64::Engine;
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // header.claims.signature: exactly three parts, the signature over the first two.
        let (signed_part, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, claims) =
            signed_part.split_once('.').filter(|(_, c)| !c.contains('.')).ok_or(TokenError::Invalid)?;
        let header: serde_json::Value =
            b64.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or(TokenError::Invalid)?;
        if header["alg"] != "HS256" {
            return Err(TokenError::Invalid);
        }
        let signature = b64.decode(signature).map_err(|_| TokenError::Invalid)?;
        self.mac(signed_part).verify_slice(&signature).map_err(|_| TokenError::Invalid)?;
        let claims = b64.decode(claims).map_err(|_| TokenError::Invalid)?;
        let registered: Registered = serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)?;
        if registered.iss != self.issuer {
            return Err(TokenError::Invalid);
        }
        if registered.exp < now {
            return Err(TokenError::Expired);
        }
        serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        exp: i64,
        iss: String,
    }

    fn claims(exp: i64, iss: &str) -> Claims {
        Claims { sub: "7".into(), exp, iss: iss.into() }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let jwt = Hs256::new(b"secret", "heft-test");
        let token = jwt.sign(&claims(1_000, "heft-test")).expect("sign");
        assert_eq!(jwt.verify::<Claims>(&token, 1_000), Ok(claims(1_000, "heft-test")));
        assert_eq!(jwt.verify::<Claims>(&token, 1_001), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_foreign_tokens_are_invalid() {
        let jwt = Hs256::new(b"secret", "heft-test");
        let other_key = Hs256::new(b"other", "heft-test").sign(&claims(9_999, "heft-test")).expect("sign");
        let other_issuer = jwt.sign(&claims(9_999, "someone-else")).expect("sign");
        // An expired token with a bad signature is invalid, not expired.
        let forged_old = Hs256::new(b"other", "heft-test").sign(&claims(1, "heft-test")).expect("sign");
        let good = jwt.sign(&claims(9_999, "heft-test")).expect("sign");
        let (head, rest) = good.split_once('.').expect("dot");
        let alg_none = format!("{}.{rest}", {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        });
        let missing_sub = jwt.sign(&serde_json::json!({"exp": 9_999, "iss": "heft-test"})).expect("sign");
        for bad in [other_key, other_issuer, forged_old, alg_none, missing_sub, format!("{head}.x.y.z"), "".into()] {
            assert_eq!(jwt.verify::<Claims>(&bad, 100), Err(TokenError::Invalid), "{bad}");
        }
    }

    /// A token made elsewhere (Python's hmac, RFC 7519 HS256, key "secret") verifies, as tokens
    /// issued before this code did.
    #[test]
    fn standard_tokens_verify() {
        let token = concat!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.",
            "eyJzdWIiOiI3IiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJoZWZ0LXRlc3QifQ.",
            "ZTGHIO5Ink51R9JGONHP_r9xpI-EdcV3F3qLvu1VTsQ"
        );
        let jwt = Hs256::new(b"secret", "heft-test");
        assert_eq!(jwt.verify::<Claims>(token, 0), Ok(claims(4_102_444_800, "heft-test")));
        assert_eq!(Hs256::new(b"secreT", "heft-test").verify::<Claims>(token, 0), Err(TokenError::Invalid));
    }
}
