//! doc: spanned YAML loading and schema validation.

use std::path::Path;
use std::time::{Duration, Instant};

use testbay_core::doc::{parse_document, parse_yaml, Limits};
use testbay_core::pack::{GlobalParams, PackDef, TaskDef, TaskReturn};

fn errs<T: serde::de::DeserializeOwned + schemars::JsonSchema + 'static>(
    text: &str,
) -> Vec<String> {
    match parse_document::<T>(Path::new("f.yaml"), text.as_bytes()) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn spans_point_at_keys_and_items() {
    let text = "name: p\nversion: '1'\ngroups:\n  smoke:\n    tests: [a, b,\n      c]\n";
    let doc = parse_document::<PackDef>(Path::new("p.yaml"), text.as_bytes()).unwrap();
    let s = doc.span("groups.smoke.tests[2]").unwrap();
    assert_eq!((s.line, s.column), (6, 7));
    let s = doc.span("groups.smoke").unwrap();
    assert_eq!((s.line, s.column), (4, 3));
    let s = doc.span("version").unwrap();
    assert_eq!((s.line, s.column), (2, 1));
    // A defaulted key falls back to its nearest ancestor in the file.
    let d = doc.diag("groups.smoke.setup", "x");
    assert_eq!(d.line, Some(4));
    assert_eq!(doc.value.groups["smoke"].tests, ["a", "b", "c"]);
}

#[test]
fn unknown_key_suggests_the_near_one() {
    let e = errs::<TaskDef>("name: t\nrun: [x]\nprereq_task: [boot]\n");
    assert_eq!(
        e,
        ["f.yaml:3:1: prereq_task: unknown key `prereq_task`; did you mean `prereq_tasks`?"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errs::<TaskDef>(
        "name: t\nrun: python3 x.py\nest_task_time: -4\nmax_runtime: -1\npriority: high\nbogus: 1\n",
    );
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("f.yaml:2:1: run: expected a list, found a string (`python3 x.py`)"),
        "{}",
        e[0]
    );
    assert_eq!(
        e[1],
        "f.yaml:3:1: est_task_time: must be at least 0 (found -4)"
    );
    assert_eq!(
        e[2],
        "f.yaml:4:1: max_runtime: must be at least 0 (found -1)"
    );
    assert_eq!(
        e[3],
        "f.yaml:5:1: priority: expected an integer, found a string (`high`)"
    );
    assert!(
        e[4].starts_with("f.yaml:6:1: bogus: unknown key `bogus`; expected one of: name,"),
        "{}",
        e[4]
    );
}

#[test]
fn missing_required_key_names_it() {
    let e = errs::<TaskDef>("name: t\n");
    assert_eq!(e, ["f.yaml:1:1: run: missing required key `run`"]);
}

#[test]
fn enum_values_are_listed_with_a_suggestion() {
    let e = errs::<GlobalParams>("resource_mode: per_task_seperate\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("did you mean `per_task_separate`?"),
        "{}",
        e[0]
    );
    assert!(
        e[0].starts_with("f.yaml:1:1: resource_mode: expected one of `all`, `per_task_separate`"),
        "{}",
        e[0]
    );
}

#[test]
fn open_mappings_refuse_near_misses_but_keep_free_keys() {
    let e = errs::<GlobalParams>("proces_limit: 2\nchannel_list: [1, 2]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with(
        "f.yaml:1:1: proces_limit: unknown key `proces_limit`; did you mean `process_limit`?"
    ));
    let ok =
        parse_document::<GlobalParams>(Path::new("f"), b"process_limit: 2\nchannel_list: [1, 2]\n")
            .unwrap();
    assert_eq!(ok.value.process_limit, 2);
    assert_eq!(ok.value.extra["channel_list"], serde_json::json!([1, 2]));
}

#[test]
fn nested_definitions_and_nullable_fields_validate() {
    let e = errs::<TaskReturn>("result: Passed\nmulti_result:\n  - name: a\n    result: 3\n  - name: b\n    reslt: Passed\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("f.yaml:4:5: multi_result[0].result: expected a string"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("f.yaml:5:5: multi_result[1].result: missing required key"),
        "{}",
        e[1]
    );
    assert!(
        e[2].contains("multi_result[1].reslt: unknown key `reslt`; did you mean `result`?"),
        "{}",
        e[2]
    );
    assert!(errs::<TaskReturn>("result: Passed\nmulti_result: null\n").is_empty());
    // JSON is YAML too: result files go through the same loader.
    assert!(
        errs::<TaskReturn>(r#"{"result": "Failed", "metadata": {"message": "m", "x": 1}}"#)
            .is_empty()
    );
}

#[test]
fn duplicate_keys_are_errors() {
    let e = errs::<TaskDef>("name: t\nrun: [x]\nname: u\n");
    assert_eq!(e, ["f.yaml:3:1: duplicate key `name` (first at line 1)"]);
}

#[test]
fn syntax_errors_name_the_line() {
    let e = errs::<TaskDef>("name: t\nrun: [x\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("YAML syntax"), "{}", e[0]);
}

#[test]
fn non_utf8_names_offset_and_line() {
    let e = errs::<TaskDef>("");
    assert_eq!(e, ["f.yaml:1:1: expected a mapping, found nothing (null)"]);
    let bytes = b"name: t\nrun: [caf\xe9]\n";
    let d = parse_document::<TaskDef>(Path::new("t.yaml"), bytes).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].line, Some(2));
    assert_eq!(d[0].column, Some(10));
    assert!(
        d[0].message
            .contains("not valid UTF-8: byte 0xe9 at offset 17"),
        "{}",
        d[0].message
    );
}

#[test]
fn alias_bomb_is_refused_fast() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = Instant::now();
    let d = parse_document::<GlobalParams>(Path::new("bomb.yaml"), text.as_bytes()).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("alias bomb"), "{}", d[0].message);
    assert_eq!(d[0].line, Some(5));
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let d = parse_yaml(Path::new("deep.yaml"), &text, Limits::default()).unwrap_err();
    assert!(
        d[0].message.contains("nests deeper than 64"),
        "{}",
        d[0].message
    );
}

#[test]
fn tags_quotes_and_special_scalars() {
    let doc = parse_document::<GlobalParams>(
        Path::new("f"),
        "\u{feff}a: !!str 5\nb: '7'\nc: !!int '8'\nd: ~\ne: 0x10\nf: 1.5e3\n".as_bytes(),
    )
    .unwrap();
    let x = &doc.value.extra;
    assert_eq!(x["a"], "5");
    assert_eq!(x["b"], "7");
    assert_eq!(x["c"], 8);
    assert!(x["d"].is_null());
    assert_eq!(x["e"], 16);
    assert_eq!(x["f"], 1500.0);
    let e = errs::<GlobalParams>("a: .inf\nb: !custom x\nc: !!int nope\n");
    assert_eq!(
        e,
        [
            "f.yaml:1:4: `.inf` is not a finite number",
            "f.yaml:2:12: unsupported tag `!custom`",
            "f.yaml:3:10: `nope` is not a valid !!int",
        ]
    );
}

#[test]
fn complex_keys_and_second_documents_are_refused() {
    let e = errs::<GlobalParams>("? [a, b]\n: 1\nok: 2\n");
    assert_eq!(
        e,
        ["f.yaml:1:3: a mapping key must be a plain value (a name)"]
    );
    let e = errs::<GlobalParams>("a: 1\n---\nb: 2\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("f.yaml:2:1: a second YAML document"),
        "{}",
        e[0]
    );
}

#[test]
fn quoting_hint_for_numbers_where_text_is_expected() {
    let e = errs::<PackDef>("name: p\nversion: 1.0\n");
    assert_eq!(
        e,
        ["f.yaml:2:1: version: expected a string, found a number (`1`); put it in quotes to make it text"]
    );
}

#[test]
fn a_large_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.yaml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(testbay_core::doc::MAX_FILE_BYTES + 1).unwrap();
    let d = testbay_core::doc::load_document::<GlobalParams>(&p).unwrap_err();
    assert!(
        d[0].message.contains("larger than 8 MiB"),
        "{}",
        d[0].message
    );
    let d = testbay_core::doc::load_document::<GlobalParams>(&dir.path().join("none.yaml"))
        .unwrap_err();
    assert!(d[0].message.starts_with("cannot read"), "{}", d[0].message);
}

#[test]
fn partial_documents_drop_only_the_bad_keys() {
    let (doc, diags) = testbay_core::doc::parse_document_partial::<TaskDef>(
        Path::new("t.yaml"),
        b"name: t\nrun: [x]\nmax_runtime: -1\nprereq_tasks: [a, 3]\nbogus: 1\n",
    );
    assert_eq!(diags.len(), 3);
    let doc = doc.expect("repairable");
    assert_eq!(doc.value.max_runtime, None);
    assert!(doc.value.prereq_tasks.is_empty());
    let (doc, _) =
        testbay_core::doc::parse_document_partial::<TaskDef>(Path::new("t.yaml"), b"name: t\n");
    assert!(doc.is_none(), "a missing required key cannot be repaired");
}

/// The one syntax error of `text`: `line:column`, the message without the parser's place,
/// and that place (`line:column`) when the message names it.
fn syntax(text: &str) -> (String, String, Option<String>) {
    let d = parse_yaml(Path::new("f.yaml"), text, Limits::default()).unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    let place = format!("{}:{}", d[0].line.unwrap(), d[0].column.unwrap());
    match d[0].message.split_once(" (the parser stopped at ") {
        Some((head, stop)) => (
            place,
            head.to_string(),
            Some(stop.split(": ").next().unwrap().to_string()),
        ),
        None => (place, d[0].message.clone(), None),
    }
}

fn at(place: &str, message: &str, stop: &str) -> (String, String, Option<String>) {
    (
        place.to_string(),
        format!("YAML syntax: {message}"),
        Some(stop.to_string()),
    )
}

const UNCLOSED_LIST: &str =
    "unclosed `[`: the list opened here is still open where the parser stopped; close it with `]`";

#[test]
fn an_unclosed_list_is_reported_where_it_opened() {
    // The parser gives up at the end of the file (7:1); the `[` of line 6 is what to fix.
    let text = "name: p\nversion: '1'\ngroups:\n  smoke:\n    setup: [boot]\n    tests: [a, b\n";
    assert_eq!(syntax(text), at("6:12", UNCLOSED_LIST, "7:1"));
    let d = parse_yaml(Path::new("f.yaml"), text, Limits::default()).unwrap_err();
    assert!(
        d[0].message.ends_with(
            "(the parser stopped at 7:1: while parsing a flow sequence, expected ',' or ']')"
        ),
        "{}",
        d[0].message
    );
    // With more lines after it, the parser stops at an odd place further down.
    let text = "name: p\ngroups:\n  smoke:\n    tests: [a, b\n  regression:\n    tests: [c]\n";
    assert_eq!(syntax(text), at("4:12", UNCLOSED_LIST, "5:13"));
    // A list over several lines is fine until it is left open.
    assert_eq!(syntax("a: [\n  1,\n  2\n"), at("1:4", UNCLOSED_LIST, "4:1"));
}

#[test]
fn unclosed_mappings_name_every_bracket_still_open() {
    assert_eq!(
        syntax("a: [x, {y: 1\nb: 2\n"),
        at(
            "1:8",
            "unclosed `{`: the mapping opened here is still open where the parser stopped; close it with `}`; the `[` at 1:4 is open too",
            "2:2"
        )
    );
    // JSON is YAML too (result files): the `{` of line 1.
    assert_eq!(
        syntax("{\"result\": \"Passed\",\n \"metadata\": {\"x\": 1}\n"),
        at(
            "1:1",
            "unclosed `{`: the mapping opened here is still open where the parser stopped; close it with `}`",
            "3:1"
        )
    );
}

#[test]
fn brackets_in_comments_quotes_and_block_text_are_not_counted() {
    let text = "# [ in a comment\na: \"[x\"\nc: |\n  {z\nb: [y\n";
    assert_eq!(syntax(text), at("5:4", UNCLOSED_LIST, "6:1"));
    // In a block scalar's lines the scanner counts bytes, not characters.
    let text = "c: |\n  {ééé\nb: [y\n";
    assert_eq!(syntax(text), at("3:4", UNCLOSED_LIST, "4:1"));
}

#[test]
fn wrong_and_stray_closing_brackets() {
    assert_eq!(
        syntax("a: [1, 2}\n"),
        at(
            "1:4",
            "the list opened here with `[` is closed by `}` at 1:9; close it with `]`",
            "1:9"
        )
    );
    assert_eq!(
        syntax("a: [1, 2]]\n"),
        at("1:10", "`]` closes nothing: no `[` is open here", "1:10")
    );
}

#[test]
fn quotes_left_open_or_closed_too_early() {
    let unclosed = |q: char| {
        format!("unclosed `{q}`: the quoted value started here is not closed on its line; write the closing `{q}`")
    };
    // The scanner named the quote, but as "invalid indentation" or "end of stream".
    assert_eq!(syntax("a: \"x\nb: 1\n"), at("1:4", &unclosed('"'), "2:1"));
    assert_eq!(syntax("a: 'x\n"), at("1:4", &unclosed('\''), "2:1"));
    assert_eq!(
        syntax("a: 'it's'\n"),
        at(
            "1:7",
            "this `'` ends the quoted value started at 1:4, and text follows it; write `''` for a `'` inside the value",
            "1:8"
        )
    );
    assert_eq!(
        syntax("a: \"C:\\data\"\n"),
        at(
            "1:7",
            "`\\d` is not an escape: in double quotes a backslash starts one; write `\\\\` for a backslash, or use single quotes",
            "1:7"
        )
    );
}

#[test]
fn tabs_are_pointed_at() {
    let tab = "a tab indents this line; YAML indents with spaces only";
    assert_eq!(syntax("a:\n\tb: 1\n"), at("2:1", tab, "2:2"));
    // The scanner reports these on the line before the tab.
    assert_eq!(syntax("a: 1\n\tb: 2\n"), at("2:1", tab, "1:4"));
    assert_eq!(syntax("a: |\n\tx\n"), at("2:1", tab, "1:4"));
}

#[test]
fn bad_indentation_names_the_levels_above() {
    assert_eq!(
        syntax("a:\n  b:\n    c: 1\n   d: 2\n"),
        at(
            "4:4",
            "bad indentation: this line is indented 3 spaces, but the keys and items above it are indented 4 (line 3), 2 (line 2) or 0 (line 1)",
            "4:5"
        )
    );
    assert_eq!(
        syntax("a:\n  - b\n - c\n"),
        at(
            "3:2",
            "bad indentation: this line is indented 1 space, but the keys and items above it are indented 4 (line 2), 2 (line 2) or 0 (line 1)",
            "3:2"
        )
    );
    assert_eq!(
        syntax("a:\n  - b\n  c: 1\n"),
        at(
            "3:3",
            "this line is indented like the list item at line 2 but is not a list item; start it with `- `, or indent it like the key it belongs to: 4 (line 2), 2 (line 2) or 0 (line 1)",
            "3:3"
        )
    );
    assert_eq!(
        syntax("a:\n  b: [x]\n  - c\n"),
        at(
            "3:3",
            "a list item among the keys of the mapping at line 2; a list goes under a key of its own",
            "3:5"
        )
    );
    assert_eq!(
        syntax("name: p\n  version: 1\n"),
        at(
            "2:3",
            "bad indentation: this line is indented 2 spaces, deeper than the key above it, so it continues the value started at 1:7, and a value cannot hold `: `; indent it like a key above: 0 (line 1)",
            "2:10"
        )
    );
}

#[test]
fn a_line_without_colon_is_named_not_the_next_one() {
    assert_eq!(
        syntax("a: 1\nb 2\nc: 3\n"),
        at(
            "2:1",
            "`b 2` is neither a key nor a list item; a key needs `: ` after it, a list item `- ` before it",
            "3:1"
        )
    );
    assert_eq!(
        syntax("x:\n- a\n-b\n"),
        at(
            "3:1",
            "`-b` is neither a key nor a list item; a list item needs a space after `-`",
            "4:1"
        )
    );
}

#[test]
fn positions_count_characters_and_crlf_line_breaks() {
    assert_eq!(
        syntax("# ünïcödé\r\nname: café\r\nrun: [x, 'y\r\n"),
        at(
            "3:10",
            "unclosed `'`: the quoted value started here is not closed on its line; write the closing `'`",
            "4:1"
        )
    );
    assert_eq!(
        syntax("a: ['é', {b: 1]\r\n"),
        at(
            "1:10",
            "the mapping opened here with `{` is closed by `]` at 1:15; close it with `}`",
            "1:15"
        )
    );
    assert_eq!(
        syntax("name: café\r\nrun: [x\r\n"),
        at("2:6", UNCLOSED_LIST, "3:1")
    );
}

#[test]
fn other_syntax_errors_keep_the_parser_place_with_a_hint() {
    assert_eq!(
        syntax("run: x: y\n"),
        (
            "1:7".to_string(),
            "YAML syntax: mapping values are not allowed in this context; a value that holds `: ` must be in quotes".to_string(),
            None
        )
    );
    assert_eq!(
        syntax("a: @x\n"),
        (
            "1:4".to_string(),
            "YAML syntax: unexpected character: `@'; a value that starts with it must be in quotes"
                .to_string(),
            None
        )
    );
}

/// The character at 1-based `line` and `column`, breaking lines as YAML does.
fn char_at(text: &str, line: u32, column: u32) -> Option<char> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.split('\n')
        .nth(line as usize - 1)?
        .chars()
        .nth(column as usize - 1)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// On any text, a syntax error points inside the text, and at the very character it
    /// names: the open bracket, the quote, the stray closer, the tab.
    #[test]
    fn syntax_errors_point_at_what_they_name(pieces in proptest::collection::vec(
        proptest::sample::select(vec![
            "a", "b: ", ": ", "- ", "-", "[", "]", "{", "}", ", ", "\"", "'", "\\", "\n", "\r\n",
            "  ", "\t", " #", "|\n", "é", "&x ", "*x", "? ", "---\n", "x: y\n", "  k: v\n",
        ]),
        0..40,
    )) {
        let text = pieces.concat();
        if let Err(d) = parse_yaml(Path::new("f.yaml"), &text, Limits::default()) {
            for d in d.iter().filter(|d| d.message.starts_with("YAML syntax")) {
                let (line, column) = (d.line.unwrap(), d.column.unwrap());
                // In the text, or just past its end (the scanner counts a last line break
                // the text may not have).
                let lines = text.replace("\r\n", "\n").replace('\r', "\n");
                let here = lines.split('\n').nth(line as usize - 1).unwrap_or("");
                proptest::prop_assert!(
                    line as usize <= lines.split('\n').count() + 1
                        && column as usize <= here.chars().count() + 1,
                    "{d} in {text:?}"
                );
                let named = d
                    .message
                    .strip_prefix("YAML syntax: unclosed `")
                    .or_else(|| d.message.strip_prefix("YAML syntax: the list opened here with `"))
                    .or_else(|| d.message.strip_prefix("YAML syntax: the mapping opened here with `"))
                    .or_else(|| d.message.strip_prefix("YAML syntax: `"))
                    .and_then(|m| m.chars().next());
                let named = if d.message.contains("a tab indents") { Some('\t') } else { named };
                if let Some(c) = named {
                    proptest::prop_assert_eq!(char_at(&text, line, column), Some(c), "{} in {:?}", d, text);
                }
            }
        }
    }
}
