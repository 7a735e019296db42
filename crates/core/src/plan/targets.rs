//! `valid_duts` and `valid_ats`: which items may run on a lane's DUT and the run's ATS.
//! Patterns are `any` or globs (`*`, `?`) compared without regard to case, against a DUT's
//! name or model and the ATS's name. An item valid nowhere is Skipped when the plan is
//! built; a shared item (`split` coverage) goes to a lane it is valid on.

use super::{ItemId, Plan};
use crate::outcome::SKIPPED;

/// Whether `value` matches a `valid_duts`/`valid_ats` pattern: `any`, or a glob with `*`
/// and `?`, compared without regard to case.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    if pattern.eq_ignore_ascii_case("any") {
        return true;
    }
    fn glob(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| glob(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && glob(rest, &v[1..]),
            Some((c, rest)) => {
                !v.is_empty() && v[0].to_lowercase().eq(c.to_lowercase()) && glob(rest, &v[1..])
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    glob(&p, &v)
}

impl Plan {
    /// valid_ats / valid_duts: items not valid for their target become Skipped now.
    pub(super) fn skip_invalid_targets(&mut self) {
        for id in 0..self.items.len() {
            let def = &self.items[id].def;
            if let Some(ats) = &self.ats {
                if !def.valid_ats.iter().any(|p| pattern_matches(p, ats)) {
                    let msg = format!(
                        "not valid for ATS {ats} (valid_ats: {})",
                        def.valid_ats.join(", ")
                    );
                    self.settle(id, SKIPPED, msg, None);
                    continue;
                }
            }
            let valid_lanes: Vec<usize> = match self.items[id].lane {
                Some(l) => vec![l],
                None => (0..self.lanes.len()).collect(),
            };
            if !valid_lanes.iter().any(|&l| self.valid_on(id, l)) {
                let dut_names: Vec<String> = valid_lanes
                    .iter()
                    .map(|&l| self.lanes[l].dut_label())
                    .collect();
                let msg = format!(
                    "not valid for DUT {} (valid_duts: {})",
                    dut_names.join(", "),
                    self.items[id].def.valid_duts.join(", ")
                );
                self.settle(id, SKIPPED, msg, self.items[id].lane);
            }
        }
    }

    pub(super) fn valid_on(&self, id: ItemId, lane: usize) -> bool {
        let Some(dut) = &self.lanes[lane].dut else {
            return true;
        };
        self.items[id].def.valid_duts.iter().any(|p| {
            pattern_matches(p, &dut.name)
                || dut.model.as_deref().is_some_and(|m| pattern_matches(p, m))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("any", "x"));
        assert!(pattern_matches("stb-*", "STB-01"));
        assert!(pattern_matches("TP-?000", "tp-4000"));
        assert!(!pattern_matches("rtr-*", "stb-01"));
        assert!(pattern_matches("*", ""));
    }
}
