//! WeChat Pay API v3 signatures and encryption, pure functions (reference §1–2, §3.7).
//!
//! Requests: SHA256withRSA over `METHOD\nURI\nts\nnonce\nbody\n`, carried in
//! `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"`.
//! Responses and callbacks: SHA256withRSA over `ts\nnonce\nbody\n` in `Wechatpay-*` headers.
//! Callback resources: AEAD_AES_256_GCM with the APIv3 key. Legacy confirm page: APIv2 HMAC-SHA256.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::Sha256;

use crate::pay::keys;
use crate::pay::keys::{PrivateKey, PublicKey};

/// The only scheme WeChat Pay v3 uses with RSA keys.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("Authorization: {0}")]
    Authorization(String),
    #[error("AES-GCM key must be 16, 24 or 32 bytes, not {0}")]
    KeyLength(usize),
    #[error("AES-GCM nonce must be 12 bytes, not {0}")]
    NonceLength(usize),
    #[error("AES-GCM ciphertext is not Base64")]
    Base64,
    #[error("AES-GCM: authentication failed (wrong key, nonce, associated data or ciphertext)")]
    Decrypt,
    #[error("HMAC key rejected")]
    Hmac,
}

/// The request signing string: `METHOD\nURI\nts\nnonce\nbody\n`. `uri` is path plus `?query`
/// exactly as sent; `body` the exact bytes sent (empty for GET).
pub fn request_message(method: &str, uri: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(method.len() + uri.len() + timestamp.len() + nonce.len() + body.len() + 5);
    for part in [method.as_bytes(), uri.as_bytes(), timestamp.as_bytes(), nonce.as_bytes(), body] {
        m.extend_from_slice(part);
        m.push(b'\n');
    }
    m
}

/// The response/callback verification string: `ts\nnonce\nbody\n`.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    for part in [timestamp.as_bytes(), nonce.as_bytes(), body] {
        m.extend_from_slice(part);
        m.push(b'\n');
    }
    m
}

/// The five fields of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

impl Authorization {
    /// The header value, in the Go SDK's field order, no spaces.
    pub fn header(&self) -> String {
        format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{}\",timestamp=\"{}\",serial_no=\"{}\",signature=\"{}\"",
            self.mchid, self.nonce_str, self.timestamp, self.serial_no, self.signature
        )
    }

    /// Parse a header value: any field order, optional spaces after commas; every field required
    /// exactly once.
    pub fn parse(value: &str) -> Result<Authorization, SignError> {
        let bad = |m: &str| SignError::Authorization(m.to_string());
        let rest = value.trim().strip_prefix(SCHEME).ok_or_else(|| bad("not WECHATPAY2-SHA256-RSA2048"))?;
        if !rest.starts_with(' ') {
            return Err(bad("no space after the scheme"));
        }
        let mut fields: [Option<String>; 5] = Default::default();
        for pair in rest.split(',') {
            let (k, v) = pair.trim().split_once('=').ok_or_else(|| bad("a field without ="))?;
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(|| bad("an unquoted value"))?;
            let slot = match k.trim() {
                "mchid" => 0,
                "nonce_str" => 1,
                "timestamp" => 2,
                "serial_no" => 3,
                "signature" => 4,
                _ => return Err(bad("an unknown field")),
            };
            if fields[slot].replace(v.to_string()).is_some() {
                return Err(bad("a repeated field"));
            }
        }
        let [Some(mchid), Some(nonce_str), Some(timestamp), Some(serial_no), Some(signature)] = fields else {
            return Err(bad("a missing field"));
        };
        Ok(Authorization { mchid, nonce_str, timestamp, serial_no, signature })
    }
}

/// Sign a request; returns the `Authorization` fields.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    key: &PrivateKey,
    mchid: &str,
    serial_no: &str,
    method: &str,
    uri: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Authorization {
    let ts = timestamp.to_string();
    let signature = keys::sign_sha256(key, &request_message(method, uri, &ts, nonce, body));
    Authorization {
        mchid: mchid.to_string(),
        nonce_str: nonce.to_string(),
        timestamp: ts,
        serial_no: serial_no.to_string(),
        signature,
    }
}

/// Whether `auth` is a valid signature of this request by `key`.
pub fn verify_request(key: &PublicKey, auth: &Authorization, method: &str, uri: &str, body: &[u8]) -> bool {
    keys::verify_sha256(key, &request_message(method, uri, &auth.timestamp, &auth.nonce_str, body), &auth.signature)
}

/// Sign a response or callback body: Base64 signature over `ts\nnonce\nbody\n`.
pub fn sign_response(key: &PrivateKey, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    keys::sign_sha256(key, &response_message(timestamp, nonce, body))
}

pub fn verify_response(key: &PublicKey, timestamp: &str, nonce: &str, body: &[u8], signature: &str) -> bool {
    keys::verify_sha256(key, &response_message(timestamp, nonce, body), signature)
}

/// 32 characters of `[0-9A-Za-z]`, as the Go SDK makes them.
pub fn nonce() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect()
}

/// A 12-character GCM nonce (used as its ASCII bytes).
pub fn gcm_nonce() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect()
}

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// AES-GCM encrypt → Base64(ciphertext ‖ tag). The key length picks AES-128/192/256.
pub fn aead_encrypt(key: &[u8], nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<String, SignError> {
    if nonce.len() != 12 {
        return Err(SignError::NonceLength(nonce.len()));
    }
    let n = Nonce::from_slice(nonce);
    let payload = Payload { msg: plaintext, aad };
    let out = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(16))?.encrypt(n, payload),
        24 => Aes192Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(24))?.encrypt(n, payload),
        32 => Aes256Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(32))?.encrypt(n, payload),
        other => return Err(SignError::KeyLength(other)),
    }
    .map_err(|_| SignError::Decrypt)?;
    Ok(STANDARD.encode(out))
}

/// AES-GCM decrypt Base64(ciphertext ‖ tag). 16/24/32-byte keys are accepted here (the Go SDK
/// vector uses 16); the configuration insists on 32.
pub fn aead_decrypt(key: &[u8], nonce: &[u8], aad: &[u8], ciphertext_b64: &str) -> Result<Vec<u8>, SignError> {
    if nonce.len() != 12 {
        return Err(SignError::NonceLength(nonce.len()));
    }
    let data = STANDARD.decode(ciphertext_b64.trim()).map_err(|_| SignError::Base64)?;
    let n = Nonce::from_slice(nonce);
    let payload = Payload { msg: &data, aad };
    match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(16))?.decrypt(n, payload),
        24 => Aes192Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(24))?.decrypt(n, payload),
        32 => Aes256Gcm::new_from_slice(key).map_err(|_| SignError::KeyLength(32))?.decrypt(n, payload),
        other => return Err(SignError::KeyLength(other)),
    }
    .map_err(|_| SignError::Decrypt)
}

/// The APIv2 sign string: non-empty values, keys sorted by ASCII, `k=v&…&key=<key>`.
pub fn legacy_sign_string(params: &[(&str, &str)], apiv2_key: &str) -> String {
    let mut kv: Vec<&(&str, &str)> = params.iter().filter(|(k, v)| !v.is_empty() && *k != "sign").collect();
    kv.sort_by(|a, b| a.0.cmp(b.0));
    let mut s: String = kv.iter().map(|(k, v)| format!("{k}={v}&")).collect();
    s.push_str("key=");
    s.push_str(apiv2_key);
    s
}

/// APIv2 HMAC-SHA256 sign (upper-case hex), as the legacy confirm-page parameters carry it.
pub fn legacy_sign(params: &[(&str, &str)], apiv2_key: &str) -> Result<String, SignError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(apiv2_key.as_bytes()).map_err(|_| SignError::Hmac)?;
    mac.update(legacy_sign_string(params, apiv2_key).as_bytes());
    Ok(hex::encode_upper(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn sha256_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    const TS: &str = "1735704000";
    const NONCE: &str = "593BEC0C930BF1AFEB40B4A08C8FB242";

    #[test]
    fn example_a_create_signing_string() {
        let body = r#"{"out_order_no":"VC20250101120000A1B2","appid":"wxd678efh567hg6787","service_id":"2002000000000558128851361561536","service_introduction":"智能售货柜购物","time_range":{"start_time":"OnAccept"},"risk_fund":{"name":"ESTIMATE_ORDER_COST","amount":20000,"description":"预估商品费用"},"notify_url":"https://vend.example.com/wxpay/payscore/notify","need_user_confirm":true,"device":{"start_device_id":"CAB-0001"}}"#;
        let m = request_message("POST", "/v3/payscore/serviceorder", TS, NONCE, body.as_bytes());
        assert_eq!(sha256_hex(&m), "20b1df580a8e0ba09ee993bfbc56454a70fa7fc23a54b8e0dbac44bdc3724fed");
    }

    #[test]
    fn example_a2_get_signing_strings() {
        let cases = [
            (
                "/v3/payscore/serviceorder?out_order_no=VC20250101120000A1B2&service_id=2002000000000558128851361561536&appid=wxd678efh567hg6787",
                "fa9fc2bd72c6e59ebd3888bbbe0fccfd273f78722fb7a7be542e9d118ebcaf06",
            ),
            (
                "/v3/bill/tradebill?bill_date=2025-01-01&bill_type=ALL",
                "05a32716ce75216046f492bc5909f396241a4722b61d5dd248760e17d35d845a",
            ),
            ("/v3/billdownload/file?token=xxx", "9f3a6a6c09765f2dae8bf0f92892046a46ef60f77273de628a014a4a003d5cc8"),
        ];
        for (uri, hash) in cases {
            let m = request_message("GET", uri, TS, NONCE, b"");
            assert!(m.ends_with(b"\n\n"));
            assert_eq!(sha256_hex(&m), hash, "{uri}");
        }
    }

    #[test]
    fn example_b_verification_string() {
        let m = response_message("1735704005", "c5ac7061fccab6bf3e254dcf98995b8c", b"");
        assert_eq!(m, b"1735704005\nc5ac7061fccab6bf3e254dcf98995b8c\n\n");
        // The §2.6 callback body exactly as printed there (its ciphertext is the literal "...").
        let body = r#"{"id":"EV-2018022511223320873","create_time":"2025-01-01T12:00:05+08:00","resource_type":"encrypt-resource","event_type":"PAYSCORE.USER_CONFIRM","summary":"确认订单","resource":{"original_type":"payscore","algorithm":"AEAD_AES_256_GCM","ciphertext":"...","associated_data":"payscore","nonce":"NRmRtJbZvnbC"}}"#;
        let m = response_message("1735704005", "c5ac7061fccab6bf3e254dcf98995b8c", body.as_bytes());
        assert_eq!(sha256_hex(&m), "3986292304e3e299a0fdfe5131bbc10421eaf3c175eb2242ee8ae45951f19d20");
    }

    const C_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";
    const C_CIPHERTEXT: &str = "mdREWypYNik+Gb28eZitrhCNnl623zjSD1Ma8KiPHWD/muBsmTb4xwhD/XS/WzlZ04coXg6JnWG7YpB0t3NCZ5HqiUVy4lA/IZwSh0EMftjI2DCX15voOly0suCZ3Y94G5f8u5WHMBZSOlT8+GDyaX9hK3f13JdkPyyj94dzVVOj6OcrA/0uipKxesQguKO2fAMMHOVmW60Hpf2Oc7Kl1wmAbc9pDr9+lBzCsiHlaoJZifyeRnLLJBvRZfGNqKffS3sJCbjp+R+izOI/P46RCqrcgavmxgvnQcnU1Ep81spEc1EDBqiGZv3+UdUJgI1KAXO8GX7gKm6nyDQY1dkFsEiPliXjxHmZqMpaH90rsBG+sxL2KcabGoNBiRpfhpOWG6qF";
    const C_PLAINTEXT: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","out_order_no":"VC20250101120000A1B2","service_id":"2002000000000558128851361561536","openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":"DOING","state_description":"USER_CONFIRM","order_id":"1000000000201905131342000000000001"}"#;

    #[test]
    fn example_c_decrypts_and_encrypts() {
        let plain = aead_decrypt(C_KEY.as_bytes(), b"NRmRtJbZvnbC", b"payscore", C_CIPHERTEXT).expect("decrypt");
        assert_eq!(plain.len(), 275);
        assert_eq!(String::from_utf8(plain).expect("utf8"), C_PLAINTEXT);
        let enc = aead_encrypt(C_KEY.as_bytes(), b"NRmRtJbZvnbC", b"payscore", C_PLAINTEXT.as_bytes()).expect("enc");
        assert_eq!(enc, C_CIPHERTEXT);
        // Wrong AAD, wrong key, bad nonce length all fail.
        assert_eq!(aead_decrypt(C_KEY.as_bytes(), b"NRmRtJbZvnbC", b"", C_CIPHERTEXT), Err(SignError::Decrypt));
        assert_eq!(
            aead_decrypt(b"0123456789abcdefghijABCDEFGHIJ02", b"NRmRtJbZvnbC", b"payscore", C_CIPHERTEXT),
            Err(SignError::Decrypt)
        );
        assert_eq!(aead_decrypt(C_KEY.as_bytes(), b"short", b"", C_CIPHERTEXT), Err(SignError::NonceLength(5)));
        assert_eq!(aead_decrypt(b"short", b"NRmRtJbZvnbC", b"", C_CIPHERTEXT), Err(SignError::KeyLength(5)));
        // Empty AAD round-trips; 24-byte keys work too.
        let k24 = b"0123456789abcdefghijABCD";
        let e = aead_encrypt(k24, b"NRmRtJbZvnbC", b"", b"hello").expect("enc");
        assert_eq!(aead_decrypt(k24, b"NRmRtJbZvnbC", b"", &e).expect("dec"), b"hello");
    }

    #[test]
    fn example_d_legacy_sign() {
        let params = [
            ("mch_id", "1230000109"),
            ("package", "AAQTnZoAAAABAAAAAAD8m2b8VRdZ2kVdKmHNZiAAAABc"),
            ("timestamp", "1735704001"),
            ("nonce_str", "zyx53Nkey8o4bHpxTQvd8m7e92nG5mG2"),
            ("sign_type", "HMAC-SHA256"),
        ];
        let key = "192006250b4c09247ec02edce69f6a2d";
        assert_eq!(
            legacy_sign_string(&params, key),
            "mch_id=1230000109&nonce_str=zyx53Nkey8o4bHpxTQvd8m7e92nG5mG2&package=AAQTnZoAAAABAAAAAAD8m2b8VRdZ2kVdKmHNZiAAAABc&sign_type=HMAC-SHA256&timestamp=1735704001&key=192006250b4c09247ec02edce69f6a2d"
        );
        assert_eq!(
            legacy_sign(&params, key).expect("sign"),
            "02F1D2FCDFEE1EB1AEFBE146C97A728EC5858F43B054FC597AF06F6BBAE5399D"
        );
    }

    /// Official Go SDK vector: `wechatpay-apiv3/wechatpay-go`, `core/notify/notify_test.go`,
    /// `TestHandler_ParseNotifyRequest`.
    mod go_sdk_vector {
        /// SPKI of the vector's test certificate (serial D7CE59D1F522D701), extracted once with
        /// `openssl x509 -in cert.pem -pubkey -noout`.
        pub const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2VCTd91fnUn73Xy9DLvt
/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXagHQ4vGeZN0yqm++rDsGK+
U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOmDeJf2vg6byms9RUipiq4
SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B834uxl1zNLYQCrkdBzb8oU
xwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGfy8wus7hwKz6clt3Whmmd
a7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtkaSef4FdEEgEXJiw0VAJT
8wIDAQAB
-----END PUBLIC KEY-----";
        pub const TIMESTAMP: &str = "1624523846";
        pub const NONCE: &str = "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz";
        pub const SIGNATURE: &str = concat!(
            "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXF",
            "lbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1I",
            "BLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY4",
            "06ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q=="
        );
        pub const CIPHERTEXT: &str = concat!(
            "YDS3lKPaC4Y52Gf3uhft5qUBlIa8b428AWTtTauHQfQrRw+X1WpiuHIDy0vo1Vd6VEq67aVyqPdDYMkRVSDaZL3iZt",
            "tevRMOoPKMifozg6XPWjIZumks/GpT48lI4NizyeaqLBokNebthah3o1H76qSlO9NkDjp9bzmKLEYYH9TEklFUpsvPqOTOcgSLgh21YJXYR",
            "7dEBXFgRLiNIKRgO5JdXh1hccRUAlyVWxE54PXpnQ=="
        );
        pub fn body() -> String {
            format!(
                "{{\"id\":\"3119dfba-e649-5eec-ab1e-3412bc4d2e17\",\"create_time\":\"2021-06-24T16:37:26+08:00\",\"resource_type\":\"encrypt-resource\",\"event_type\":\"PAYSCORE.USER_OPEN_SERVICE\",\"summary\":\"签约成功\",\"resource\":{{\"original_type\":\"payscore\",\"algorithm\":\"AEAD_AES_256_GCM\",\"ciphertext\":\"{CIPHERTEXT}\",\"associated_data\":\"payscore\",\"nonce\":\"Kj7QIyUiYx1q\"}}}}"
            )
        }
        pub const PLAINTEXT: &str = "{\"mchid\":\"1234567890\",\"appid\":\"054aa7d7a2a54ab5898df65bd96f001c\",\"create_time\":\"2020-06-30T12:12:00+08:00\",\"out_contract_code\":\"21640bdbd08e473e828f3206a2741c6e\"}";
    }

    #[test]
    fn go_sdk_notify_vector_verifies_and_decrypts() {
        use go_sdk_vector as v;
        let key = keys::parse_public(v::PUBLIC_KEY).expect("spki");
        let body = v::body();
        assert!(verify_response(&key, v::TIMESTAMP, v::NONCE, body.as_bytes(), v::SIGNATURE));
        // Exactly ts\nnonce\nbody\n: without the final newline, or with a changed byte, it fails.
        let mut without_nl = format!("{}\n{}\n{}", v::TIMESTAMP, v::NONCE, body).into_bytes();
        assert!(!keys::verify_sha256(&key, &without_nl, v::SIGNATURE));
        without_nl.push(b'\n');
        assert!(keys::verify_sha256(&key, &without_nl, v::SIGNATURE));
        assert!(!verify_response(&key, "1624523847", v::NONCE, body.as_bytes(), v::SIGNATURE));
        let plain = aead_decrypt(b"testMchAPIv3Key0", b"Kj7QIyUiYx1q", b"payscore", v::CIPHERTEXT).expect("decrypt");
        assert_eq!(String::from_utf8(plain).expect("utf8"), v::PLAINTEXT);
    }

    #[test]
    fn authorization_builds_parses_and_verifies() {
        let key = keys::load_private("sim", keys::sim::WECHAT_MERCHANT_KEY).expect("key");
        let public = key.to_public_key();
        let auth = sign_request(&key, "1230000109", "SERIAL", "POST", "/v3/x", 1735704000, NONCE, b"{}");
        let header = auth.header();
        assert!(header.starts_with("WECHATPAY2-SHA256-RSA2048 mchid=\"1230000109\",nonce_str=\""));
        assert_eq!(Authorization::parse(&header).expect("parse"), auth);
        assert!(verify_request(&public, &auth, "POST", "/v3/x", b"{}"));
        assert!(!verify_request(&public, &auth, "POST", "/v3/x", b"{ }"));
        assert!(!verify_request(&public, &auth, "GET", "/v3/x", b"{}"));
        // Order-independent, spaces after commas.
        let shuffled = format!(
            "{SCHEME} signature=\"{}\", serial_no=\"SERIAL\", timestamp=\"1735704000\", nonce_str=\"{NONCE}\", mchid=\"1230000109\"",
            auth.signature
        );
        assert_eq!(Authorization::parse(&shuffled).expect("parse"), auth);
        for bad in [
            "Bearer x",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\"",
            "WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str=\"a\",timestamp=\"1\",serial_no=\"s\",signature=\"x\"",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",mchid=\"1\",nonce_str=\"a\",timestamp=\"1\",serial_no=\"s\",signature=\"x\"",
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nonces() {
        let n = nonce();
        assert_eq!(n.len(), 32);
        assert!(n.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(n, nonce());
        assert_eq!(gcm_nonce().len(), 12);
    }
}
