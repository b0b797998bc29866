//! A simulated cabinet's inside temperature, as a pure function of the time since installation:
//! the load cells feel it (zero and span move with it) and the heartbeat reports it.
//!
//! - Fridge: a thermostat switches the compressor on at the top of its band and off at the bottom,
//!   so the temperature saws between 4 ± 1.5 °C (a thermostat differential of a few °C), falling
//!   while the compressor runs (40 % of a 30-minute cycle) and rising while it rests. The band
//!   stays inside the `sim` cabinet type's 2 to 10 °C.
//! - Ambient: the room around the cabinet, 22 ± 3 °C over a day.

use std::f64::consts::PI;
use std::time::Duration;

/// What keeps a cabinet's temperature (`heft simulate --cabinet-temp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Climate {
    /// Refrigerated, cycling around 4 °C.
    Fridge,
    /// Room temperature, about 22 °C.
    Ambient,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thermal {
    pub climate: Climate,
    /// The middle of the cycle, °C.
    pub mean_c: f64,
    /// How far the cycle goes either side of the middle, °C.
    pub swing_c: f64,
    /// A compressor cycle (fridge) or a day (ambient).
    pub period: Duration,
    /// Fridge: the part of the cycle the compressor runs, between 0 and 1.
    pub duty: f64,
    /// Where in its cycle the cabinet was when installed.
    pub phase: Duration,
}

impl Thermal {
    pub fn fridge() -> Thermal {
        Thermal {
            climate: Climate::Fridge,
            mean_c: 4.0,
            swing_c: 1.5,
            period: Duration::from_secs(30 * 60),
            duty: 0.4,
            phase: Duration::ZERO,
        }
    }

    pub fn ambient() -> Thermal {
        Thermal {
            climate: Climate::Ambient,
            mean_c: 22.0,
            swing_c: 3.0,
            period: Duration::from_secs(24 * 3600),
            duty: 0.0,
            phase: Duration::ZERO,
        }
    }

    pub fn of(climate: Climate) -> Thermal {
        match climate {
            Climate::Fridge => Thermal::fridge(),
            Climate::Ambient => Thermal::ambient(),
        }
    }

    /// How far into its cycle the cabinet is at `at`, from 0 to 1.
    fn cycle(&self, at: Duration) -> f64 {
        let period = self.period.as_secs_f64();
        if period <= 0.0 {
            return 0.0;
        }
        ((at + self.phase).as_secs_f64() / period).fract()
    }

    /// The compressor's share of the cycle, kept off the ends so neither half is empty.
    fn duty(&self) -> f64 {
        self.duty.clamp(0.05, 0.95)
    }

    /// The inside temperature `at` after installation, °C.
    pub fn temp_c_at(&self, at: Duration) -> f64 {
        let x = self.cycle(at);
        match self.climate {
            Climate::Ambient => self.mean_c + self.swing_c * (2.0 * PI * x).sin(),
            Climate::Fridge => {
                let duty = self.duty();
                let top = self.mean_c + self.swing_c;
                if x < duty {
                    top - 2.0 * self.swing_c * x / duty
                } else {
                    top - 2.0 * self.swing_c + 2.0 * self.swing_c * (x - duty) / (1.0 - duty)
                }
            }
        }
    }

    /// Whether the heater, or in a fridge the compressor, runs `at` (the heartbeat's `heating`).
    pub fn heating_at(&self, at: Duration) -> bool {
        match self.climate {
            Climate::Fridge => self.cycle(at) < self.duty(),
            Climate::Ambient => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: f64) -> Duration {
        Duration::from_secs_f64(m * 60.0)
    }

    #[test]
    fn a_fridge_saws_in_its_band_and_cools_while_the_compressor_runs() {
        let t = Thermal::fridge();
        let temps: Vec<f64> = (0..600).map(|i| t.temp_c_at(minutes(f64::from(i) * 0.1))).collect();
        let (lo, hi) = temps.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!((lo - 2.5).abs() < 0.05 && (hi - 5.5).abs() < 0.05, "band {lo}..{hi}");
        // Compressor on for the first 12 minutes of the 30: falling; off: rising.
        assert!(t.heating_at(minutes(1.0)) && t.heating_at(minutes(11.0)) && !t.heating_at(minutes(13.0)));
        assert!(t.temp_c_at(minutes(6.0)) < t.temp_c_at(minutes(1.0)));
        assert!(t.temp_c_at(minutes(25.0)) > t.temp_c_at(minutes(15.0)));
        assert!((t.temp_c_at(minutes(12.0)) - 2.5).abs() < 1e-9, "bottom when the compressor stops");
        // A cycle later, the same.
        assert!((t.temp_c_at(minutes(37.0)) - t.temp_c_at(minutes(7.0))).abs() < 1e-9);
    }

    #[test]
    fn the_phase_shifts_the_cycle() {
        let t = Thermal { phase: minutes(12.0), ..Thermal::fridge() };
        assert!((t.temp_c_at(Duration::ZERO) - 2.5).abs() < 1e-9);
        assert!(!t.heating_at(Duration::ZERO));
    }

    #[test]
    fn an_ambient_cabinet_follows_the_day_and_never_heats() {
        let t = Thermal::ambient();
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert!((t.temp_c_at(hours(6)) - 25.0).abs() < 1e-9);
        assert!((t.temp_c_at(hours(18)) - 19.0).abs() < 1e-9);
        assert!((0..48).all(|h| (19.0..=25.0).contains(&t.temp_c_at(hours(h))) && !t.heating_at(hours(h))));
    }
}
