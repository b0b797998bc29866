//! Product validation: what a product must satisfy before lanes can sell it by weight.

use serde::{Deserialize, Serialize};

use crate::domain::units::{Fen, Grams};
use crate::domain::validation::{FieldError, FieldErrors};

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Heaviest unit a lane is expected to weigh, in grams.
pub const MAX_UNIT_G: f64 = 50_000.0;
/// Highest price, in fen (100 000 yuan).
pub const MAX_PRICE_FEN: i64 = 10_000_000;
/// Longest image URL, in characters.
pub const MAX_IMAGE_URL_CHARS: usize = 2048;

/// A product as created or edited by an operator. Besides each field's own limits, `tolerance_g`
/// is under half of `unit_g` (so one unit more or less can be told apart) and the name has
/// something visible.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(pattern = "^[A-Za-z0-9-]{4,32}$")]
    pub barcode: String,
    /// Weight of one unit, in grams.
    #[schema(value_type = f64, exclusive_minimum = 0.0, maximum = 50000.0)]
    pub unit_g: Grams,
    /// How far a unit may weigh from `unit_g` and still count as one unit.
    #[schema(value_type = f64, exclusive_minimum = 0.0, maximum = 25000.0)]
    pub tolerance_g: Grams,
    #[schema(value_type = i64, minimum = 0, maximum = 10000000)]
    pub price_fen: Fen,
    /// An http(s) URL; empty for none.
    #[serde(default)]
    #[schema(max_length = 2048, pattern = r"^(https?://\S+)?$")]
    pub image_url: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Checks a product, listing every bad field.
pub fn validate(p: &ProductInput) -> Result<(), Vec<FieldError>> {
    let mut errors = FieldErrors::default();

    let name = p.name.trim();
    if super::validation::is_blank(name) {
        errors.push("name", "required", "name is required (and must have something visible)");
    } else if name.chars().count() > MAX_NAME_CHARS {
        errors.push("name", "too_long", format!("name is longer than {MAX_NAME_CHARS} characters"));
    }

    if p.barcode.is_empty() {
        errors.push("barcode", "required", "barcode is required");
    } else if !(4..=32).contains(&p.barcode.len()) || !p.barcode.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        errors.push("barcode", "bad_format", "barcode must be 4–32 characters of ASCII letters, digits or '-'");
    }

    let unit_ok = check_grams(&mut errors, "unit_g", "unit weight", p.unit_g);
    if unit_ok && p.unit_g > Grams(MAX_UNIT_G) {
        errors.push("unit_g", "out_of_range", format!("unit weight must be at most {MAX_UNIT_G} g"));
    }

    // Compared with the unit weight only when that one is valid, to report one problem once.
    if check_grams(&mut errors, "tolerance_g", "tolerance", p.tolerance_g) && unit_ok && p.tolerance_g >= p.unit_g / 2.0
    {
        errors.push(
            "tolerance_g",
            "too_loose",
            format!(
                "tolerance must be less than half the unit weight ({} g); otherwise one unit more or less cannot be told apart",
                p.unit_g / 2.0
            ),
        );
    }

    if p.price_fen < Fen::ZERO {
        errors.push("price_fen", "negative", "price cannot be negative");
    } else if p.price_fen > Fen(MAX_PRICE_FEN) {
        errors.push("price_fen", "out_of_range", format!("price must be at most {MAX_PRICE_FEN} fen"));
    }

    if let Some(url) = p.image_url.as_deref().filter(|u| !u.is_empty()) {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if url.chars().count() > MAX_IMAGE_URL_CHARS {
            errors.push("image_url", "too_long", format!("image URL is longer than {MAX_IMAGE_URL_CHARS} characters"));
        } else if rest.is_none_or(|r| r.is_empty() || r.chars().any(char::is_whitespace)) {
            errors.push(
                "image_url",
                "bad_format",
                "image URL must start with https:// or http:// and contain no spaces",
            );
        }
    }

    errors.finish()
}

/// Pushes `bad_format` or `not_positive` for a weight that is not a finite positive number;
/// true when it is one.
fn check_grams(errors: &mut FieldErrors, field: &str, what: &str, Grams(g): Grams) -> bool {
    if !g.is_finite() {
        errors.push(field, "bad_format", format!("{what} must be a number of grams"));
        false
    } else if g <= 0.0 {
        errors.push(field, "not_positive", format!("{what} must be more than 0 g"));
        false
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ProductInput {
        ProductInput {
            name: "Cola 330 ml".into(),
            barcode: "6901234567892".into(),
            unit_g: Grams(350.0),
            tolerance_g: Grams(10.0),
            price_fen: Fen(350),
            image_url: Some("https://img.example.com/cola.png".into()),
            active: true,
        }
    }

    /// The (field, code) pairs `validate` reports.
    fn codes(p: &ProductInput) -> Vec<(String, &'static str)> {
        match validate(p) {
            Ok(()) => vec![],
            Err(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    fn one(field: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_string(), code)]
    }

    #[test]
    fn a_good_product_passes() {
        assert_eq!(validate(&good()), Ok(()));
        assert_eq!(validate(&ProductInput { image_url: None, price_fen: Fen(0), ..good() }), Ok(()));
        assert_eq!(validate(&ProductInput { image_url: Some(String::new()), ..good() }), Ok(()));
        assert_eq!(validate(&ProductInput { image_url: Some("http://x".into()), ..good() }), Ok(()));
    }

    #[test]
    fn serde_defaults() {
        let p: ProductInput =
            serde_json::from_str(r#"{"name":"Cola","barcode":"1234","unit_g":350,"tolerance_g":10,"price_fen":350}"#)
                .expect("parses");
        assert_eq!(p.image_url, None);
        assert!(p.active, "products are active unless said otherwise");
    }

    #[test]
    fn name_rules() {
        assert_eq!(codes(&ProductInput { name: "   ".into(), ..good() }), one("name", "required"));
        assert_eq!(codes(&ProductInput { name: " \u{200B}\u{FEFF} ".into(), ..good() }), one("name", "required"));
        assert_eq!(codes(&ProductInput { name: "é".repeat(100), ..good() }), vec![]);
        assert_eq!(codes(&ProductInput { name: "é".repeat(101), ..good() }), one("name", "too_long"));
    }

    #[test]
    fn barcode_rules() {
        assert_eq!(codes(&ProductInput { barcode: String::new(), ..good() }), one("barcode", "required"));
        for bad in ["123", &"1".repeat(33), "1234 5678", "12345678é", "1234_5678"] {
            assert_eq!(codes(&ProductInput { barcode: bad.into(), ..good() }), one("barcode", "bad_format"), "{bad}");
        }
        for ok in ["1234", &"A".repeat(32), "ISBN-978-3"] {
            assert_eq!(codes(&ProductInput { barcode: ok.into(), ..good() }), vec![], "{ok}");
        }
    }

    #[test]
    fn unit_g_rules() {
        assert_eq!(codes(&ProductInput { unit_g: Grams(0.0), ..good() }), one("unit_g", "not_positive"));
        assert_eq!(codes(&ProductInput { unit_g: Grams(-5.0), ..good() }), one("unit_g", "not_positive"));
        assert_eq!(codes(&ProductInput { unit_g: Grams(f64::NAN), ..good() }), one("unit_g", "bad_format"));
        assert_eq!(codes(&ProductInput { unit_g: Grams(f64::INFINITY), ..good() }), one("unit_g", "bad_format"));
        assert_eq!(codes(&ProductInput { unit_g: Grams(50_000.1), ..good() }), one("unit_g", "out_of_range"));
        assert_eq!(codes(&ProductInput { unit_g: Grams(50_000.0), ..good() }), vec![]);
    }

    #[test]
    fn tolerance_rules() {
        assert_eq!(codes(&ProductInput { tolerance_g: Grams(0.0), ..good() }), one("tolerance_g", "not_positive"));
        assert_eq!(codes(&ProductInput { tolerance_g: Grams(-1.0), ..good() }), one("tolerance_g", "not_positive"));
        assert_eq!(codes(&ProductInput { tolerance_g: Grams(f64::NAN), ..good() }), one("tolerance_g", "bad_format"));
        assert_eq!(codes(&ProductInput { tolerance_g: Grams(174.9), ..good() }), vec![]);
        assert_eq!(codes(&ProductInput { tolerance_g: Grams(175.0), ..good() }), one("tolerance_g", "too_loose"));
        let err = validate(&ProductInput { tolerance_g: Grams(200.0), ..good() }).expect_err("too loose");
        assert!(err[0].message.contains("cannot be told apart"), "{}", err[0].message);
    }

    #[test]
    fn price_rules() {
        assert_eq!(codes(&ProductInput { price_fen: Fen(-1), ..good() }), one("price_fen", "negative"));
        assert_eq!(codes(&ProductInput { price_fen: Fen(10_000_000), ..good() }), vec![]);
        assert_eq!(codes(&ProductInput { price_fen: Fen(10_000_001), ..good() }), one("price_fen", "out_of_range"));
    }

    #[test]
    fn image_url_rules() {
        for bad in ["ftp://x/y.png", "img.png", "https://", "https://a b/c.png", "HTTPS//x"] {
            assert_eq!(
                codes(&ProductInput { image_url: Some(bad.into()), ..good() }),
                one("image_url", "bad_format"),
                "{bad}"
            );
        }
        let long = format!("https://x/{}", "a".repeat(2040));
        assert_eq!(codes(&ProductInput { image_url: Some(long), ..good() }), one("image_url", "too_long"));
        let max = format!("https://x/{}", "a".repeat(2038));
        assert_eq!(codes(&ProductInput { image_url: Some(max), ..good() }), vec![]);
    }

    #[test]
    fn every_problem_is_listed() {
        let p = ProductInput {
            name: String::new(),
            barcode: "x".into(),
            unit_g: Grams(-1.0),
            tolerance_g: Grams(0.0),
            price_fen: Fen(-5),
            image_url: Some("nope".into()),
            active: false,
        };
        assert_eq!(
            codes(&p),
            vec![
                ("name".to_string(), "required"),
                ("barcode".to_string(), "bad_format"),
                ("unit_g".to_string(), "not_positive"),
                ("tolerance_g".to_string(), "not_positive"),
                ("price_fen".to_string(), "negative"),
                ("image_url".to_string(), "bad_format"),
            ]
        );
    }
}
