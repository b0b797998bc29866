//! Field errors: what a 422 response lists, one entry per bad field, so a form can show each
//! next to its input.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the request body, e.g. `doors[0].lanes[2].channel`.
    pub field: String,
    /// Stable machine-readable code, e.g. `out_of_range`, `duplicate`, `unknown_product`.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), code, message: message.into() }
    }
}

/// Collects field errors; `finish` is `Ok` only when none were pushed.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

/// Whether text holds a control character other than a line break or a tab: a NUL byte above all
/// (PostgreSQL refuses it, SQLite stores it), escapes, bells.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// Whether a name is empty once spaces and invisible characters (zero-width space, joiners, the
/// byte-order mark) are taken away: a name nobody could see.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || matches!(c, '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_but_line_breaks_and_tabs() {
        assert!(has_control_chars("Cola\u{0}"));
        assert!(has_control_chars("\u{1b}[31m"));
        assert!(has_control_chars("\u{85}"));
        assert!(!has_control_chars("two\nlines\twith a tab"));
        assert!(!has_control_chars("可口可乐 330ml"));
    }

    #[test]
    fn blank_names_include_invisible_ones() {
        for s in ["", "   ", "\u{200B}", " \u{FEFF}\u{2060} ", "\t\n"] {
            assert!(is_blank(s), "{s:?}");
        }
        for s in ["a", " 可乐 ", "\u{200B}x"] {
            assert!(!is_blank(s), "{s:?}");
        }
    }
}
