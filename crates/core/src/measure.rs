//! Measurements: a named number with units and limits that a task reports (in its result
//! file, a sub-result, or live through the reporter), judged against its limits the way
//! TestStand's numeric limit step does.
//!
//! Which limit a comparison reads: the two-limit ones (`GELE`, `GTLT`, `GELT`, `GTLE`)
//! read `low` and `high`; `GE` and `GT` read `low`; `LE` and `LT` read `high`; `EQ` and
//! `NE` read `low` (the expected value, as TestStand's `Limits.Low`). Without a
//! `comparison` the limits given choose one: both → `GELE`, `low` → `GE`, `high` → `LE`,
//! none → `LOG` (recorded, never judged).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// How a measurement is compared with its limits (TestStand's comparison types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub enum Comparison {
    /// value == low
    EQ,
    /// value != low
    NE,
    /// value > low
    GT,
    /// value >= low
    GE,
    /// value < high
    LT,
    /// value <= high
    LE,
    /// low <= value <= high
    GELE,
    /// low < value < high
    GTLT,
    /// low <= value < high
    GELT,
    /// low < value <= high
    GTLE,
    /// Recorded only; no limits, never fails.
    LOG,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::EQ => "EQ",
            Comparison::NE => "NE",
            Comparison::GT => "GT",
            Comparison::GE => "GE",
            Comparison::LT => "LT",
            Comparison::LE => "LE",
            Comparison::GELE => "GELE",
            Comparison::GTLT => "GTLT",
            Comparison::GELT => "GELT",
            Comparison::GTLE => "GTLE",
            Comparison::LOG => "LOG",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "EQ" => Comparison::EQ,
            "NE" => Comparison::NE,
            "GT" => Comparison::GT,
            "GE" => Comparison::GE,
            "LT" => Comparison::LT,
            "LE" => Comparison::LE,
            "GELE" => Comparison::GELE,
            "GTLT" => Comparison::GTLT,
            "GELT" => Comparison::GELT,
            "GTLE" => Comparison::GTLE,
            "LOG" => Comparison::LOG,
            _ => return None,
        })
    }

    /// Whether it reads `low` and whether it reads `high`.
    pub fn reads(self) -> (bool, bool) {
        use Comparison::*;
        match self {
            EQ | NE | GT | GE => (true, false),
            LT | LE => (false, true),
            GELE | GTLT | GELT | GTLE => (true, true),
            LOG => (false, false),
        }
    }
}

/// One measurement: `{name, value, units, low, high, comparison}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct Measurement {
    /// Name, unique within its task or sub-result (e.g. `snr_db`).
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub units: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub high: Option<f64>,
    /// How `value` is compared with the limits; chosen from the limits given when absent
    /// (both → GELE, low → GE, high → LE, none → LOG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub comparison: Option<Comparison>,
}

/// A measurement that cannot be judged as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasureError {
    #[error("measurement `{name}`: comparison {comparison} needs `{key}`")]
    MissingLimit {
        name: String,
        comparison: &'static str,
        key: &'static str,
    },
    #[error("measurement `{name}`: `{key}` is not a finite number")]
    NotFinite { name: String, key: &'static str },
    #[error("measurement `{name}`: low ({low}) is above high ({high})")]
    LowAboveHigh { name: String, low: f64, high: f64 },
    #[error("measurement name must not be empty")]
    EmptyName,
}

impl Measurement {
    /// The comparison that applies: the given one, or the one the limits choose.
    pub fn effective_comparison(&self) -> Comparison {
        self.comparison.unwrap_or(match (self.low, self.high) {
            (Some(_), Some(_)) => Comparison::GELE,
            (Some(_), None) => Comparison::GE,
            (None, Some(_)) => Comparison::LE,
            (None, None) => Comparison::LOG,
        })
    }

    /// Checks that it can be judged: a name, finite numbers, the limits its comparison
    /// reads, and `low <= high` when a two-limit comparison reads both.
    pub fn check(&self) -> Result<(), MeasureError> {
        let name = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(MeasureError::EmptyName);
        }
        for (key, v) in [
            ("value", Some(self.value)),
            ("low", self.low),
            ("high", self.high),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(MeasureError::NotFinite { name: name(), key });
            }
        }
        let comparison = self.effective_comparison();
        let (reads_low, reads_high) = comparison.reads();
        for (reads, given, key) in [
            (reads_low, self.low, "low"),
            (reads_high, self.high, "high"),
        ] {
            if reads && given.is_none() {
                return Err(MeasureError::MissingLimit {
                    name: name(),
                    comparison: comparison.as_str(),
                    key,
                });
            }
        }
        if let (true, true, Some(low), Some(high)) = (reads_low, reads_high, self.low, self.high) {
            if low > high {
                return Err(MeasureError::LowAboveHigh {
                    name: name(),
                    low,
                    high,
                });
            }
        }
        Ok(())
    }

    /// Judges it: `Some(true)` within limits, `Some(false)` out of them, `None` when it is
    /// only logged. A measurement that fails [`Measurement::check`] is out of limits.
    pub fn passed(&self) -> Option<bool> {
        if self.check().is_err() {
            return Some(false);
        }
        let v = self.value;
        let low = self.low.unwrap_or(f64::NAN);
        let high = self.high.unwrap_or(f64::NAN);
        use Comparison::*;
        Some(match self.effective_comparison() {
            EQ => v == low,
            NE => v != low,
            GT => v > low,
            GE => v >= low,
            LT => v < high,
            LE => v <= high,
            GELE => low <= v && v <= high,
            GTLT => low < v && v < high,
            GELT => low <= v && v < high,
            GTLE => low < v && v <= high,
            LOG => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(value: f64, low: Option<f64>, high: Option<f64>, c: Option<Comparison>) -> Measurement {
        Measurement {
            name: "snr_db".into(),
            value,
            units: Some("dB".into()),
            low,
            high,
            comparison: c,
        }
    }

    #[test]
    fn limits_choose_the_comparison_and_edges_follow_it() {
        assert_eq!(m(5.0, Some(5.0), Some(9.0), None).passed(), Some(true));
        assert_eq!(
            m(9.0, Some(5.0), Some(9.0), Some(Comparison::GTLT)).passed(),
            Some(false)
        );
        assert_eq!(
            m(5.0, Some(5.0), Some(9.0), Some(Comparison::GELT)).passed(),
            Some(true)
        );
        assert_eq!(
            m(9.0, Some(5.0), Some(9.0), Some(Comparison::GELT)).passed(),
            Some(false)
        );
        assert_eq!(m(4.9, Some(5.0), None, None).passed(), Some(false));
        assert_eq!(m(31.0, None, Some(30.0), None).passed(), Some(false));
        assert_eq!(
            m(3.0, Some(3.0), None, Some(Comparison::EQ)).passed(),
            Some(true)
        );
        assert_eq!(
            m(3.0, Some(3.0), None, Some(Comparison::NE)).passed(),
            Some(false)
        );
        assert_eq!(m(1e9, None, None, None).passed(), None);
    }

    #[test]
    fn unjudgeable_measurements_name_the_key_and_fail() {
        let e = m(1.0, None, None, Some(Comparison::LE))
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "measurement `snr_db`: comparison LE needs `high`"
        );
        let e = m(1.0, Some(9.0), Some(5.0), None).check().unwrap_err();
        assert!(matches!(e, MeasureError::LowAboveHigh { .. }), "{e}");
        assert_eq!(m(f64::NAN, None, None, None).passed(), Some(false));
    }

    #[test]
    fn comparison_names_round_trip() {
        for c in [Comparison::GELE, Comparison::LOG, Comparison::NE] {
            assert_eq!(Comparison::parse(c.as_str()), Some(c));
        }
        assert_eq!(Comparison::parse("gele"), Some(Comparison::GELE));
        assert_eq!(Comparison::parse("between"), None);
    }
}
