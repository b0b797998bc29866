//! Alipay Open Platform signing (RSA2 = SHA256withRSA), pure functions shared by the client and
//! the simulator (reference §5.2–5.4).
//!
//! Three different contents are signed:
//! * a request: every parameter but `sign` (so `sign_type` is in), empty values dropped, sorted
//!   by key, `k=v&…` with raw values;
//! * a synchronous response: the exact bytes of the `…_response` value, never re-serialised;
//! * a notify: every URL-decoded parameter but `sign` and `sign_type`, sorted.

use crate::pay::keys;
use crate::pay::keys::{PrivateKey, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("response is not a JSON object")]
    NotAnObject,
    #[error("response has neither {0} nor error_response")]
    NoResponse(String),
    #[error("response carries no sign")]
    NoSign,
    #[error("signature does not verify")]
    BadSignature,
}

/// The request sign content: all parameters except `sign`, empty values dropped, ASCII-sorted.
pub fn sign_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params.into_iter().filter(|(k, v)| *k != "sign" && !v.is_empty()).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    join(&pairs)
}

/// The notify verification content: URL-decoded parameters minus `sign` and `sign_type`, sorted.
/// Empty values stay in, as in the official SDK's check (Alipay does not send them anyway).
pub fn notify_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params.into_iter().filter(|(k, _)| *k != "sign" && *k != "sign_type").collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    join(&pairs)
}

fn join(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `sign` for a request's parameters.
pub fn sign_request<'a>(key: &PrivateKey, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    keys::sign_sha256(key, sign_content(params).as_bytes())
}

/// Whether a request's `sign` matches its other parameters (the simulator's gateway check).
pub fn verify_request<'a>(key: &PublicKey, params: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> bool {
    let Some((_, sign)) = params.clone().into_iter().find(|(k, _)| *k == "sign") else { return false };
    keys::verify_sha256(key, sign_content(params).as_bytes(), sign)
}

/// `sign` for a notify's parameters (the simulator's side).
pub fn sign_notify<'a>(key: &PrivateKey, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    keys::sign_sha256(key, notify_content(params).as_bytes())
}

/// Whether a notify's `sign` matches its other parameters.
pub fn verify_notify<'a>(key: &PublicKey, params: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> bool {
    let Some((_, sign)) = params.clone().into_iter().find(|(k, _)| *k == "sign") else { return false };
    keys::verify_sha256(key, notify_content(params).as_bytes(), sign)
}

/// `alipay.trade.pay` → `alipay_trade_pay_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// A signed gateway response body: `{"<key>":<object>,"sign":"…"}`, signed over `object_json`
/// exactly as it is placed in the body.
pub fn signed_response(key: &PrivateKey, response_key: &str, object_json: &str) -> String {
    let sign = keys::sign_sha256(key, object_json.as_bytes());
    // Key and sign are plain ASCII (method names, Base64): no escaping needed.
    format!("{{\"{response_key}\":{object_json},\"sign\":\"{sign}\"}}")
}

/// A verified response: which key carried it and the raw object text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse<'a> {
    /// Either the method's `…_response` or `error_response`.
    pub key: String,
    pub raw: &'a str,
}

/// Verify a gateway response body: the raw value of `<method>_response` (or, for errors the
/// gateway answers before reaching the method, `error_response`) against `sign`.
pub fn verify_response<'a>(key: &PublicKey, body: &'a str, method: &str) -> Result<VerifiedResponse<'a>, SignError> {
    let members = top_level_members(body).ok_or(SignError::NotAnObject)?;
    let wanted = response_key(method);
    let (name, raw) = members
        .iter()
        .find(|(k, _)| *k == wanted)
        .or_else(|| members.iter().find(|(k, _)| *k == "error_response"))
        .copied()
        .ok_or_else(|| SignError::NoResponse(wanted.clone()))?;
    let sign_raw = members.iter().find(|(k, _)| *k == "sign").map(|(_, v)| *v).ok_or(SignError::NoSign)?;
    let sign: String = serde_json::from_str(sign_raw).map_err(|_| SignError::NoSign)?;
    if !keys::verify_sha256(key, raw.as_bytes(), &sign) {
        return Err(SignError::BadSignature);
    }
    Ok(VerifiedResponse { key: name.to_string(), raw })
}

/// The raw value text of a top-level key of a JSON object, exactly as it appears in `body`.
pub fn extract_raw<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    top_level_members(body)?.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Every top-level member of a JSON object as (key as written, raw value text). Keys with
/// escapes are compared as written, which is fine for Alipay's ASCII keys. `None` when `body`
/// is not a well-formed object at the top level.
fn top_level_members(body: &str) -> Option<Vec<(&str, &str)>> {
    let b = body.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut members = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key = &body[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        members.push((key, &body[start..end]));
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote; returns the index just past the closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Returns the index just past the value starting at `i`: balanced braces/brackets, strings
/// skipped whole (so braces and escaped quotes inside them do not count).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            // Number, true, false, null: up to the next delimiter.
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha256_hex(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    fn app_key() -> PrivateKey {
        keys::load_private("sim", keys::sim::ALIPAY_APP_KEY).expect("key")
    }
    fn app_pub() -> PublicKey {
        keys::load_public("sim", keys::sim::ALIPAY_APP_PUB).expect("key")
    }
    fn platform_key() -> PrivateKey {
        keys::load_private("sim", keys::sim::ALIPAY_PLATFORM_KEY).expect("key")
    }
    fn platform_pub() -> PublicKey {
        keys::load_public("sim", keys::sim::ALIPAY_PLATFORM_PUB).expect("key")
    }

    const BIZ_E: &str = r#"{"out_trade_no":"AP20250101120300C7","product_code":"PRE_AUTH_ONLINE","auth_no":"2025010110002001000200012345","subject":"智能售货柜购物","total_amount":"12.50","seller_id":"2088102000275795","buyer_id":"2088102000300001","auth_confirm_mode":"COMPLETE"}"#;

    fn example_e() -> Vec<(&'static str, &'static str)> {
        vec![
            ("version", "1.0"),
            ("method", "alipay.trade.pay"),
            ("timestamp", "2025-01-01 12:03:00"),
            ("app_id", "2021000000000001"),
            ("sign_type", "RSA2"),
            ("charset", "utf-8"),
            ("format", "JSON"),
            ("notify_url", "https://vend.example.com/alipay/notify"),
            ("biz_content", BIZ_E),
            ("app_auth_token", ""),
            ("sign", "ignored"),
        ]
    }

    #[test]
    fn example_e_sign_content() {
        let content = sign_content(example_e());
        assert!(content.starts_with("app_id=2021000000000001&biz_content={\"out_trade_no\""), "{content}");
        assert!(!content.contains("app_auth_token"), "empty values are dropped");
        assert!(content.contains("&sign_type=RSA2&"), "sign_type is signed");
        assert_eq!(sha256_hex(&content), "6ba2d9a2e3d88ba843812f55dd8f58b4d767f0d398af5d2fa8869fcd805138b5");
    }

    #[test]
    fn example_f_notify_content() {
        let params = vec![
            ("notify_type", "fund_auth_freeze"),
            ("sign", "x"),
            ("sign_type", "RSA2"),
            ("amount", "200.00"),
            ("app_id", "2021000000000001"),
            ("auth_app_id", "2021000000000001"),
            ("auth_no", "2025010110002001000200012345"),
            ("charset", "utf-8"),
            ("gmt_create", "2025-01-01 12:00:20"),
            ("gmt_trans", "2025-01-01 12:00:29"),
            ("notify_id", "ae9dc7b44e2923a8cba50681c832803g02"),
            ("notify_time", "2025-01-01 12:00:30"),
            ("operation_id", "20250101025153970002"),
            ("operation_type", "FREEZE"),
            ("out_order_no", "AF20250101120000B9"),
            ("out_request_no", "AF20250101120000B9"),
            ("payer_logon_id", "158****7723"),
            ("payer_user_id", "2088102000300001"),
            ("rest_amount", "200.00"),
            ("status", "SUCCESS"),
            ("total_freeze_amount", "200.00"),
            ("total_pay_amount", "0.00"),
            ("total_unfreeze_amount", "0.00"),
            ("version", "1.0"),
        ];
        let content = notify_content(params.clone());
        assert_eq!(sha256_hex(&content), "f7744abc4938df6e52afff4bbf8b1d9dae17109442aa055de0896da4cc8a8ff8");

        // Signed by the platform, verified with its public key; tampering fails.
        let sign = sign_notify(&platform_key(), params.clone());
        let mut signed: Vec<(&str, &str)> = params.into_iter().filter(|(k, _)| *k != "sign").collect();
        signed.push(("sign", &sign));
        assert!(verify_notify(&platform_pub(), signed.clone()));
        assert!(!verify_notify(&app_pub(), signed.clone()), "wrong key");
        let tampered: Vec<(&str, &str)> =
            signed.iter().map(|&(k, v)| if k == "amount" { (k, "2000.00") } else { (k, v) }).collect();
        assert!(!verify_notify(&platform_pub(), tampered));
        // sign_type is outside the notify content: changing it does not matter.
        let other_type: Vec<(&str, &str)> =
            signed.iter().map(|&(k, v)| if k == "sign_type" { (k, "RSA") } else { (k, v) }).collect();
        assert!(verify_notify(&platform_pub(), other_type));
    }

    #[test]
    fn request_round_trip_and_tamper() {
        let sign = sign_request(&app_key(), example_e());
        let mut params: Vec<(&str, &str)> = example_e().into_iter().filter(|(k, _)| *k != "sign").collect();
        params.push(("sign", &sign));
        assert!(verify_request(&app_pub(), params.clone()));
        let tampered: Vec<(&str, &str)> =
            params.iter().map(|&(k, v)| if k == "sign_type" { (k, "RSA") } else { (k, v) }).collect();
        assert!(!verify_request(&app_pub(), tampered), "sign_type is signed in requests");
        let no_sign: Vec<(&str, &str)> = params.iter().copied().filter(|(k, _)| *k != "sign").collect();
        assert!(!verify_request(&app_pub(), no_sign));
    }

    #[test]
    fn response_round_trip_either_order() {
        let key = response_key("alipay.trade.pay");
        assert_eq!(key, "alipay_trade_pay_response");
        let object = r#"{"code":"10000","msg":"Success","trade_no":"2025","detail":{"a":[1,{"b":"}"}]}}"#;
        let body = signed_response(&platform_key(), &key, object);
        let v = verify_response(&platform_pub(), &body, "alipay.trade.pay").expect("verifies");
        assert_eq!(v.raw, object);
        assert_eq!(v.key, key);

        // sign first, whitespace around, another member after.
        let sign = keys::sign_sha256(&platform_key(), object.as_bytes());
        let body2 = format!("{{ \"sign\" : \"{sign}\" ,\n \"{key}\" : {object} , \"alipay_cert_sn\":\"x\" }}");
        assert_eq!(verify_response(&platform_pub(), &body2, "alipay.trade.pay").expect("verifies").raw, object);

        // Tampering with the object, or a different key, fails.
        let tampered = body.replace("\"2025\"", "\"2026\"");
        assert_eq!(verify_response(&platform_pub(), &tampered, "alipay.trade.pay"), Err(SignError::BadSignature));
        assert_eq!(verify_response(&app_pub(), &body, "alipay.trade.pay"), Err(SignError::BadSignature));
        assert_eq!(
            verify_response(&platform_pub(), r#"{"alipay_trade_pay_response":{"code":"10000"}}"#, "alipay.trade.pay"),
            Err(SignError::NoSign)
        );
        assert!(matches!(verify_response(&platform_pub(), &body, "alipay.trade.query"), Err(SignError::NoResponse(_))));

        // error_response is accepted in place of the method's key.
        let err = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}"#;
        let body3 = signed_response(&platform_key(), "error_response", err);
        let v = verify_response(&platform_pub(), &body3, "alipay.trade.pay").expect("verifies");
        assert_eq!((v.key.as_str(), v.raw), ("error_response", err));
    }

    #[test]
    fn extractor_is_string_aware() {
        let body = r#"{"x_response":{"msg":"a \"quoted\" } brace { and \\ slash","n":{"m":{"k":[{},{}]}},"z":null},"sign":"s"}"#;
        assert_eq!(
            extract_raw(body, "x_response"),
            Some(r#"{"msg":"a \"quoted\" } brace { and \\ slash","n":{"m":{"k":[{},{}]}},"z":null}"#)
        );
        assert_eq!(extract_raw(body, "sign"), Some("\"s\""));
        // A key only nested inside does not count.
        assert_eq!(extract_raw(body, "msg"), None);
        // An encrypted response is a string value.
        assert_eq!(extract_raw(r#"{"sign":"s","y_response":"QUJD"}"#, "y_response"), Some("\"QUJD\""));
        assert_eq!(extract_raw(r#"{"n":12.5,"t":true}"#, "t"), Some("true"));
        assert_eq!(extract_raw(r#"{"a":{"b":1}"#, "a"), None, "unbalanced");
        assert_eq!(extract_raw("[1]", "a"), None);
    }
}
