//! StormTest's DUT search (`findStb`): terms `Field==pattern`, all of which must match;
//! `*` in a pattern matches any run of characters. Field names are case-insensitive;
//! values are compared case-insensitively.

use std::fmt;

use super::Dut;

/// A searchable DUT attribute. StormTest's names are canonical; short aliases are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    Name,
    Description,
    SerialNumber,
    ModelName,
    Manufacturer,
    HardwareVersion,
    TypeName,
    /// Testbay: rack name.
    Rack,
    /// Testbay: slot number.
    Slot,
    /// Testbay: matches if any tag matches.
    Tag,
}

/// (accepted spelling, field). The first spelling of each field is its canonical name.
const FIELDS: &[(&str, SearchField)] = &[
    ("Name", SearchField::Name),
    ("Description", SearchField::Description),
    ("SerialNumber", SearchField::SerialNumber),
    ("Serial", SearchField::SerialNumber),
    ("ModelName", SearchField::ModelName),
    ("Model", SearchField::ModelName),
    ("Manufacturer", SearchField::Manufacturer),
    ("HardwareVersion", SearchField::HardwareVersion),
    ("TypeName", SearchField::TypeName),
    ("Type", SearchField::TypeName),
    ("Rack", SearchField::Rack),
    ("Slot", SearchField::Slot),
    ("Tag", SearchField::Tag),
];

/// StormTest fields a Testbay lab file does not record.
const STORMTEST_ONLY: &[&str] = &[
    "ModelDescription",
    "ManufactureModel",
    "TypeDescription",
    "Broadcaster",
    "IRName",
    "IRDescription",
    "SmartcardNumber",
    "SmartcardParamName",
    "SmartcardParamValue",
    "ModelId",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("search term `{0}` is not `Field==pattern`")]
    BadTerm(String),
    #[error("unknown search field `{field}`{}; fields: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), field_list())]
    UnknownField {
        field: String,
        suggestion: Option<String>,
    },
    #[error("`{0}` is a StormTest field a Testbay lab file does not record; fields: {fields}", fields = field_list())]
    NotRecorded(String),
}

fn field_list() -> String {
    FIELDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for SearchField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FIELDS
            .iter()
            .find(|(_, x)| x == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

impl SearchField {
    pub fn parse(name: &str) -> Result<Self, SearchError> {
        let name = name.trim();
        if let Some((_, f)) = FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Ok(*f);
        }
        if let Some(st) = STORMTEST_ONLY.iter().find(|n| n.eq_ignore_ascii_case(name)) {
            return Err(SearchError::NotRecorded(st.to_string()));
        }
        Err(SearchError::UnknownField {
            field: name.to_string(),
            suggestion: crate::diag::did_you_mean(name, FIELDS.iter().map(|(n, _)| *n))
                .map(str::to_string),
        })
    }
}

/// A parsed search: every term must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutQuery {
    terms: Vec<(SearchField, String)>,
}

impl DutQuery {
    pub fn parse<S: AsRef<str>>(terms: &[S]) -> Result<Self, SearchError> {
        let terms = terms
            .iter()
            .map(|t| {
                let t = t.as_ref();
                let (field, pattern) = t
                    .split_once("==")
                    .ok_or_else(|| SearchError::BadTerm(t.to_string()))?;
                Ok((SearchField::parse(field)?, pattern.trim().to_lowercase()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    pub fn matches(&self, d: &Dut) -> bool {
        self.terms.iter().all(|(field, pat)| {
            let one = |v: &str| wildcard_match(pat, &v.to_lowercase());
            match field {
                SearchField::Name => one(&d.name),
                SearchField::Description => one(&d.description),
                SearchField::SerialNumber => one(&d.serial),
                SearchField::ModelName => one(&d.model),
                SearchField::Manufacturer => one(&d.manufacturer),
                SearchField::HardwareVersion => one(&d.hardware_version),
                SearchField::TypeName => one(&d.dut_type),
                SearchField::Rack => one(d.location.as_ref().map_or("", |l| &l.rack)),
                SearchField::Slot => one(&d
                    .location
                    .as_ref()
                    .map_or(String::new(), |l| l.slot.to_string())),
                SearchField::Tag => d.tags.iter().any(|t| one(t)),
            }
        })
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::wildcard_match as m;

    #[test]
    fn wildcards() {
        assert!(m("tp*", "tp-4000"));
        assert!(m("*", ""));
        assert!(m("*000", "tp-4000"));
        assert!(m("t*4*0", "tp-4000"));
        assert!(!m("t*5*", "tp-4000"));
        assert!(!m("ab*ba", "aba"));
        assert!(m("acme", "acme") && !m("acme", "acmex"));
    }
}
