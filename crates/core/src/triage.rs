//! Failure triage: known-issue rules, kept in `<data_dir>/triage.yaml` (Allure's and
//! ReportPortal's defect categories). A rule names a category (`infrastructure`,
//! `product`, `test bug` or any other word), a regular expression on a failed task's
//! message and/or on its logs, and optionally a link to the issue that tracks it. A
//! failed task gets the category of the first rule that matches: the file's order is the
//! precedence. Pure: the caller reads the logs and passes their text in.
//!
//! ```yaml
//! rules:
//!   - name: dut-unreachable
//!     category: infrastructure
//!     message: "(?i)no route to host|connection refused"
//!     issue: https://tracker.example/LAB-12
//!   - name: hdmi-flap
//!     category: product
//!     log: "HDMI hotplug lost"
//! ```
//!
//! A rule with both `message` and `log` matches when both do. The file is loaded like
//! every user file: problems name the file, line and key, and a regular expression that
//! does not compile names its rule. Written back by the console (`api::triage`) when an
//! operator adds or removes a rule; comments in the file are not kept then.

use std::path::Path;

use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::diag::Diagnostic;
use crate::doc;

/// The rules file's name in the data directory.
pub const TRIAGE_FILE: &str = "triage.yaml";
/// Most rules in the file.
pub const MAX_RULES: usize = 500;
/// Longest regular expression, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1_000;
/// Most memory one compiled expression may take (the `regex` crate's size limit).
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// What `triage.yaml` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields, default)]
#[ts(export)]
pub struct TriageFile {
    /// Known-issue rules, in precedence order: a failure takes the first that matches.
    #[schemars(length(max = 500))]
    pub rules: Vec<TriageRule>,
}

/// One known issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct TriageRule {
    /// Unique name of the rule.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// The category failures it matches get: `infrastructure`, `product`, `test bug` or
    /// any name.
    #[schemars(length(min = 1, max = 100))]
    pub category: String,
    /// Regular expression (Rust `regex` syntax) searched in the task's message and its
    /// failed sub-results' messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[schemars(length(min = 1, max = 1000))]
    pub message: Option<String>,
    /// Regular expression searched in the end of the task's logs (setup, main,
    /// teardown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[schemars(length(min = 1, max = 1000))]
    pub log: Option<String>,
    /// Link to the issue that tracks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[schemars(length(max = 2048))]
    pub issue: Option<String>,
}

/// A rule whose expressions are compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: TriageRule,
    message: Option<Regex>,
    log: Option<Regex>,
}

impl CompiledRule {
    /// Whether the rule reads logs (the caller reads them only then).
    pub fn needs_log(&self) -> bool {
        self.log.is_some()
    }
}

/// The rules of a file, compiled, in precedence order.
#[derive(Debug, Clone, Default)]
pub struct Triage {
    pub rules: Vec<CompiledRule>,
}

impl Triage {
    /// Whether any rule reads logs.
    pub fn needs_logs(&self) -> bool {
        self.rules.iter().any(CompiledRule::needs_log)
    }

    /// The first rule matching a failure with these messages (the task's and its failed
    /// sub-results') and, when a rule needs it, this log text (`log` is called at most
    /// once).
    pub fn classify(
        &self,
        messages: &[&str],
        log: &mut dyn FnMut() -> String,
    ) -> Option<&TriageRule> {
        let mut log_text: Option<String> = None;
        for r in &self.rules {
            if let Some(m) = &r.message {
                if !messages.iter().any(|t| m.is_match(t)) {
                    continue;
                }
            }
            if let Some(l) = &r.log {
                let text = log_text.get_or_insert_with(&mut *log);
                if !l.is_match(text) {
                    continue;
                }
            }
            return Some(&r.rule);
        }
        None
    }
}

/// Why a rule cannot be used; `key` is its key path in the file (`rules[2].log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub key: String,
    pub message: String,
}

/// Check a list of rules and compile them: names unique and not blank, a category, at
/// least one expression, each expression compiling within its bounds.
pub fn compile(rules: &[TriageRule]) -> Result<Triage, Vec<RuleProblem>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    if rules.len() > MAX_RULES {
        problems.push(RuleProblem {
            key: "rules".into(),
            message: format!("at most {MAX_RULES} rules, not {}", rules.len()),
        });
    }
    for (i, r) in rules.iter().enumerate() {
        let at = |k: &str| format!("rules[{i}].{k}");
        let mut bad = |key: String, message: String| problems.push(RuleProblem { key, message });
        if r.name.trim().is_empty() || r.name.len() > 100 || r.name.chars().any(char::is_control) {
            bad(
                at("name"),
                "a rule's name is 1 to 100 characters, no control characters".into(),
            );
        }
        if rules[..i].iter().any(|o| o.name == r.name) {
            bad(at("name"), format!("rule `{}` is named twice", r.name));
        }
        if r.category.trim().is_empty()
            || r.category.len() > 100
            || r.category.chars().any(char::is_control)
        {
            bad(
                at("category"),
                format!(
                    "rule `{}`: a category is 1 to 100 characters, no control characters",
                    r.name
                ),
            );
        }
        if r.message.is_none() && r.log.is_none() {
            bad(
                at("message"),
                format!(
                    "rule `{}` matches nothing: give `message` or `log` (or both)",
                    r.name
                ),
            );
        }
        if let Some(issue) = &r.issue {
            if issue.len() > 2048 || issue.chars().any(char::is_control) {
                bad(
                    at("issue"),
                    format!(
                        "rule `{}`: the issue link is at most 2,048 characters",
                        r.name
                    ),
                );
            }
        }
        let mut re = |key: &str, p: &Option<String>| -> Option<Regex> {
            let p = p.as_ref()?;
            if p.is_empty() || p.len() > MAX_PATTERN_BYTES {
                problems.push(RuleProblem {
                    key: at(key),
                    message: format!(
                        "rule `{}`: `{key}` is 1 to {MAX_PATTERN_BYTES} bytes",
                        r.name
                    ),
                });
                return None;
            }
            match RegexBuilder::new(p)
                .size_limit(MAX_COMPILED_BYTES)
                .dfa_size_limit(MAX_COMPILED_BYTES)
                .build()
            {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(RuleProblem {
                        key: at(key),
                        message: format!(
                            "rule `{}`: `{key}` is not a valid regular expression: {}",
                            r.name,
                            one_line(&e.to_string())
                        ),
                    });
                    None
                }
            }
        };
        let message = re("message", &r.message);
        let log = re("log", &r.log);
        out.push(CompiledRule {
            rule: r.clone(),
            message,
            log,
        });
    }
    if problems.is_empty() {
        Ok(Triage { rules: out })
    } else {
        Err(problems)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Load `<data_dir>/triage.yaml` and compile it; no rules when there is no file.
/// Problems name the file, line and key.
pub fn load(data_dir: &Path) -> Result<(TriageFile, Triage), Vec<Diagnostic>> {
    let path = data_dir.join(TRIAGE_FILE);
    if !path.exists() {
        return Ok((TriageFile::default(), Triage::default()));
    }
    let doc = doc::load_document::<TriageFile>(&path)?;
    match compile(&doc.value.rules) {
        Ok(t) => Ok((doc.value.clone(), t)),
        Err(problems) => Err(problems
            .into_iter()
            .map(|p| doc.diag(&p.key, p.message))
            .collect()),
    }
}

/// The file's text for `file`: a header comment, then the rules as YAML (strings
/// double-quoted, so any text survives).
pub fn to_yaml(file: &TriageFile) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::from(
        "# Known-issue rules (testbay triage): a failed task gets the category of the\n\
         # first rule that matches. Written by the console; comments are not kept.\n",
    );
    if file.rules.is_empty() {
        out.push_str("rules: []\n");
        return out;
    }
    out.push_str("rules:\n");
    for r in &file.rules {
        out.push_str(&format!("  - name: {}\n", q(&r.name)));
        out.push_str(&format!("    category: {}\n", q(&r.category)));
        for (k, v) in [
            ("message", &r.message),
            ("log", &r.log),
            ("issue", &r.issue),
        ] {
            if let Some(v) = v {
                out.push_str(&format!("    {k}: {}\n", q(v)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, cat: &str, message: Option<&str>, log: Option<&str>) -> TriageRule {
        TriageRule {
            name: name.into(),
            category: cat.into(),
            message: message.map(Into::into),
            log: log.map(Into::into),
            issue: None,
        }
    }

    #[test]
    fn first_match_wins_and_both_expressions_must_match() {
        let t = compile(&[
            rule("both", "product", Some("timeout"), Some("HDMI lost")),
            rule("msg", "infrastructure", Some("timeout"), None),
        ])
        .unwrap();
        let mut reads = 0;
        let got = t.classify(&["step timeout"], &mut || {
            reads += 1;
            "all fine".into()
        });
        assert_eq!(got.unwrap().name, "msg");
        assert_eq!(reads, 1);
        let got = t.classify(&["step timeout"], &mut || "x HDMI lost y".into());
        assert_eq!(got.unwrap().name, "both");
        assert!(t.classify(&["other"], &mut || "HDMI lost".into()).is_none());
    }

    #[test]
    fn written_text_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rule("a: b", "test bug", Some("\"quoted\" \\d+\n"), None);
        r.issue = Some("https://x/1".into());
        let f = TriageFile { rules: vec![r] };
        std::fs::write(dir.path().join(TRIAGE_FILE), to_yaml(&f)).unwrap();
        assert_eq!(load(dir.path()).unwrap().0, f);
        std::fs::write(
            dir.path().join(TRIAGE_FILE),
            to_yaml(&TriageFile::default()),
        )
        .unwrap();
        assert!(load(dir.path()).unwrap().0.rules.is_empty());
    }

    #[test]
    fn bad_rules_named_with_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(TRIAGE_FILE),
            "rules:\n  - name: ok\n    category: x\n    message: a\n  - name: broken\n    category: x\n    log: \"(unclosed\"\n",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, Some(7), "{e:?}");
        assert!(e[0].to_string().contains("broken"), "{}", e[0]);
        std::fs::write(
            dir.path().join(TRIAGE_FILE),
            "rules:\n  - name: a\n    categroy: x\n    message: a\n",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e[0].to_string().contains("category"), "{}", e[0]);
    }
}
