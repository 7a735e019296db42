//! What a result's measurements do to it: every measurement is judged against its limits
//! (`measure`); one out of limits, or one that cannot be judged as written (a missing
//! limit, a number that is not finite, a name given twice), fails the task or sub-result
//! that carries it, unless its result file says otherwise with a reason: the metadata key
//! [`OVERRIDE_KEY`] (`"measurements_override": "<reason>"`), which keeps the result as
//! reported and records why.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::measure::Measurement;

/// The metadata key of a result (or sub-result) whose measurements out of limits must not
/// fail it; its value is the reason, a non-empty string.
pub const OVERRIDE_KEY: &str = "measurements_override";

/// The judgement of one task's or sub-result's measurements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgement {
    /// One line per measurement out of limits or not judgeable, naming it.
    pub problems: Vec<String>,
    /// The reason the result file gave for keeping its result anyway.
    pub overridden: Option<String>,
    /// The override key was there but unusable (not a non-empty string).
    pub bad_override: bool,
}

impl Judgement {
    /// Whether the measurements fail their result.
    pub fn fails(&self) -> bool {
        !self.problems.is_empty() && self.overridden.is_none()
    }

    /// What to add to the result's message: the problems, and the override's reason when
    /// it kept the result; `None` when every measurement is within its limits.
    pub fn note(&self) -> Option<String> {
        if self.problems.is_empty() {
            return None;
        }
        let mut s = self.problems.join("; ");
        match &self.overridden {
            Some(reason) => s = format!("{s} (not failing it: {OVERRIDE_KEY}: {reason})"),
            None if self.bad_override => {
                s = format!(
                    "{s} ({OVERRIDE_KEY} ignored: it must be a non-empty string, the reason)"
                )
            }
            None => {}
        }
        Some(s)
    }

    /// `message` with the note appended.
    pub fn message_with_note(&self, message: &str) -> String {
        match self.note() {
            None => message.to_string(),
            Some(n) if message.trim().is_empty() => n,
            Some(n) => format!("{message}; {n}"),
        }
    }
}

/// Judge `measurements` of a result whose metadata (other than `message`) is `metadata`.
pub fn judge(measurements: &[Measurement], metadata: &Map<String, Value>) -> Judgement {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for m in measurements {
        if !seen.insert(m.name.as_str()) {
            problems.push(format!(
                "cannot judge measurement `{}`: the name is given twice",
                m.name
            ));
            continue;
        }
        if let Err(e) = m.check() {
            problems.push(format!("cannot judge {e}"));
            continue;
        }
        if m.passed() == Some(false) {
            problems.push(out_of_limits(m));
        }
    }
    let (overridden, bad_override) = match metadata.get(OVERRIDE_KEY) {
        None => (None, false),
        Some(Value::String(s)) if !s.trim().is_empty() => (Some(s.trim().to_string()), false),
        Some(_) => (None, true),
    };
    Judgement {
        problems,
        overridden,
        bad_override,
    }
}

/// "measurement `snr_db` = 3.2 dB out of limits (GELE 5..9)".
pub fn out_of_limits(m: &Measurement) -> String {
    let units = m
        .units
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    format!(
        "measurement `{}` = {}{units} out of limits ({})",
        m.name,
        m.value,
        limits_text(m)
    )
}

/// The limits a measurement is compared with, as people read them: `GELE 5..9`,
/// `GE 5`, `LE 9`, `EQ 3`, `LOG`.
pub fn limits_text(m: &Measurement) -> String {
    let c = m.effective_comparison();
    let num = |v: Option<f64>| v.map_or("?".to_string(), |v| v.to_string());
    match c.reads() {
        (true, true) => format!("{} {}..{}", c.as_str(), num(m.low), num(m.high)),
        (true, false) => format!("{} {}", c.as_str(), num(m.low)),
        (false, true) => format!("{} {}", c.as_str(), num(m.high)),
        (false, false) => c.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Comparison;

    fn m(name: &str, value: f64, low: Option<f64>, high: Option<f64>) -> Measurement {
        Measurement {
            name: name.into(),
            value,
            units: Some("dB".into()),
            low,
            high,
            comparison: None,
        }
    }

    #[test]
    fn out_of_limits_fails_and_names_the_measurement() {
        let j = judge(
            &[
                m("snr_db", 3.5, Some(5.0), Some(9.0)),
                m("ok", 6.0, Some(5.0), None),
            ],
            &Map::new(),
        );
        assert!(j.fails());
        assert_eq!(
            j.note().unwrap(),
            "measurement `snr_db` = 3.5 dB out of limits (GELE 5..9)"
        );
        assert!(!judge(&[m("ok", 6.0, Some(5.0), None)], &Map::new()).fails());
        assert_eq!(judge(&[], &Map::new()), Judgement::default());
    }

    #[test]
    fn unjudgeable_and_duplicates_fail() {
        let mut le = m("x", 1.0, None, None);
        le.comparison = Some(Comparison::LE);
        let j = judge(
            &[le, m("y", 1.0, None, None), m("y", 2.0, None, None)],
            &Map::new(),
        );
        assert_eq!(j.problems.len(), 2, "{:?}", j.problems);
        assert!(j.problems[0].contains("comparison LE needs `high`"));
        assert!(j.problems[1].contains("`y`: the name is given twice"));
        assert!(j.fails());
    }

    #[test]
    fn an_override_with_a_reason_keeps_the_result() {
        let bad = [m("snr_db", 3.5, Some(5.0), Some(9.0))];
        let mut meta = Map::new();
        meta.insert(
            OVERRIDE_KEY.into(),
            Value::String("antenna under repair".into()),
        );
        let j = judge(&bad, &meta);
        assert!(!j.fails());
        assert!(j
            .note()
            .unwrap()
            .ends_with("(not failing it: measurements_override: antenna under repair)"));
        meta.insert(OVERRIDE_KEY.into(), Value::Bool(true));
        let j = judge(&bad, &meta);
        assert!(j.fails());
        assert!(j.note().unwrap().contains("ignored"));
        assert_eq!(
            j.message_with_note("ok"),
            format!("ok; {}", j.note().unwrap())
        );
    }
}
