//! Money and weight as their own types. A price is fen and a lane's weight is grams; a count of
//! units is a plain integer. Mixing them up (adding a count to a price, comparing a weight with
//! an amount) does not compile. Both serialize as the bare number, so the wire and the columns
//! carry what they always carried.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

use serde::{Deserialize, Serialize};

/// An amount of money in fen (分), the platforms' own unit: ¥1.00 is `Fen(100)`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Fen(pub i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Yuan with two decimals, as Alipay and the bills write amounts: `Fen(-1250)` is `-12.50`.
    pub fn yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// The bare number of fen: texts say "fen" or convert with [`Fen::yuan`].
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add for Fen {
    type Output = Fen;
    fn add(self, rhs: Fen) -> Fen {
        Fen(self.0 + rhs.0)
    }
}

impl Sub for Fen {
    type Output = Fen;
    fn sub(self, rhs: Fen) -> Fen {
        Fen(self.0 - rhs.0)
    }
}

impl AddAssign for Fen {
    fn add_assign(&mut self, rhs: Fen) {
        self.0 += rhs.0;
    }
}

impl SubAssign for Fen {
    fn sub_assign(&mut self, rhs: Fen) {
        self.0 -= rhs.0;
    }
}

impl Neg for Fen {
    type Output = Fen;
    fn neg(self) -> Fen {
        Fen(-self.0)
    }
}

/// A unit price times a number of units.
impl Mul<i64> for Fen {
    type Output = Fen;
    fn mul(self, units: i64) -> Fen {
        Fen(self.0 * units)
    }
}

impl Sum for Fen {
    fn sum<I: Iterator<Item = Fen>>(iter: I) -> Fen {
        Fen(iter.map(|f| f.0).sum())
    }
}

impl<'a> Sum<&'a Fen> for Fen {
    fn sum<I: Iterator<Item = &'a Fen>>(iter: I) -> Fen {
        iter.copied().sum()
    }
}

/// A weight in grams, as a lane's load cell reports it after calibration.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Grams(pub f64);

impl Grams {
    pub const ZERO: Grams = Grams(0.0);

    pub fn abs(self) -> Grams {
        Grams(self.0.abs())
    }

    pub fn max(self, other: Grams) -> Grams {
        Grams(self.0.max(other.0))
    }

    pub fn min(self, other: Grams) -> Grams {
        Grams(self.0.min(other.0))
    }
}

/// The bare number, as `f64` writes it (with its precision): texts add the unit.
impl fmt::Display for Grams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add for Grams {
    type Output = Grams;
    fn add(self, rhs: Grams) -> Grams {
        Grams(self.0 + rhs.0)
    }
}

impl Sub for Grams {
    type Output = Grams;
    fn sub(self, rhs: Grams) -> Grams {
        Grams(self.0 - rhs.0)
    }
}

impl Neg for Grams {
    type Output = Grams;
    fn neg(self) -> Grams {
        Grams(-self.0)
    }
}

/// A unit's weight times a number of units (or any scale factor).
impl Mul<f64> for Grams {
    type Output = Grams;
    fn mul(self, factor: f64) -> Grams {
        Grams(self.0 * factor)
    }
}

/// How many of one weight make another: units in a weight change.
impl Div for Grams {
    type Output = f64;
    fn div(self, rhs: Grams) -> f64 {
        self.0 / rhs.0
    }
}

impl Div<f64> for Grams {
    type Output = Grams;
    fn div(self, rhs: f64) -> Grams {
        Grams(self.0 / rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_reads_as_yuan_and_counts_units() {
        assert_eq!(Fen(1250).yuan(), "12.50");
        assert_eq!(Fen(-5).yuan(), "-0.05");
        assert_eq!(Fen(1250).to_string(), "1250");
        assert_eq!(Fen(350) * 3, Fen(1050));
        assert_eq!([Fen(1), Fen(2)].iter().sum::<Fen>(), Fen(3));
        assert_eq!(serde_json::to_string(&Fen(700)).unwrap(), "700");
    }

    #[test]
    fn grams_divide_into_units() {
        assert_eq!(Grams(1050.0) / Grams(350.0), 3.0);
        assert_eq!((Grams(10.0) - Grams(12.5)).abs(), Grams(2.5));
        assert_eq!(serde_json::from_str::<Grams>("52.5").unwrap(), Grams(52.5));
    }
}
