//! Lab files: the demo lab, semantic errors with file and line, StormTest DUT search.

use std::path::Path;

use testbay_core::lab::{self, SearchError};

use crate::support::{demo_lab, repo};

fn parse(text: &str) -> Result<lab::Lab, lab::LabErrors> {
    lab::parse(Path::new("lab.yaml"), text)
}

#[test]
fn demo_lab_loads_with_racks_duts_and_resources() {
    let lab = lab::load(&demo_lab()).unwrap();
    assert!(lab.def.racks.len() >= 2);
    assert!(lab.def.duts.len() >= 12);
    assert_eq!(lab.def.duts.iter().filter(|d| d.offline).count(), 1);
    let stream = lab.resource("stream_server").unwrap();
    assert_eq!(stream.capacity, Some(4));
    assert_eq!(stream.config, serde_json::json!({"profile": "sd"}));
    // Every DUT and resource is a resource of the book.
    let specs = lab.book_resources();
    assert_eq!(specs.len(), lab.def.duts.len() + lab.def.resources.len());
    assert_eq!(lab::DEMO_LAB, std::fs::read_to_string(demo_lab()).unwrap());
}

#[test]
fn seeding_writes_the_demo_lab_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data/lab.yaml");
    assert!(lab::seed_demo(&p).unwrap());
    std::fs::write(&p, "name: mine\n").unwrap();
    assert!(
        !lab::seed_demo(&p).unwrap(),
        "an existing lab file is never overwritten"
    );
    assert_eq!(lab::load(&p).unwrap().def.name, "mine");
}

const BAD: &str = "\
racks:
  - name: rack-a
    slots: 2
  - name: rack-a
    slots: 0
duts:
  - name: d1
    location: {rack: rack-a, slot: 1}
  - name: d2
    location: {rack: rack-a, slot: 1}
  - name: d1
  - name: d3
    location: {rack: rakc-a, slot: 1}
  - name: d4
    location: {rack: rack-a, slot: 9}
resources:
  - name: srv
    mode: shared
    capacity: 0
  - name: d2
  - name: pwr
    capacity: 3
";

#[test]
fn semantic_errors_name_file_and_line() {
    let errs = parse(BAD).unwrap_err().0;
    let at = |needle: &str| -> u32 {
        errs.iter()
            .find(|d| d.message.contains(needle))
            .unwrap_or_else(|| panic!("no error containing {needle:?} in {errs:#?}"))
            .line
            .unwrap()
    };
    assert_eq!(at("rack `rack-a` is defined twice"), 4);
    assert_eq!(at("has no slots"), 5);
    assert_eq!(at("where `d1` already is"), 10);
    assert_eq!(at("DUT `d1` is defined twice"), 11);
    assert_eq!(at("did you mean `rack-a`"), 13);
    assert_eq!(at("which has slots 1-2"), 15);
    assert_eq!(at("capacity 0"), 19);
    assert_eq!(at("has the name of a DUT"), 20);
    assert_eq!(at("applies to shared resources only"), 22);
    assert!(errs.iter().all(|d| d.file == Path::new("lab.yaml")));
    assert_eq!(errs.len(), 9, "{errs:#?}");
}

#[test]
fn schema_errors_come_with_lines_too() {
    let errs = parse("racks:\n  - name: a\n    slots: 2\n    colour: red\n")
        .unwrap_err()
        .0;
    assert_eq!(errs[0].line, Some(4), "{errs:#?}");
    let errs = parse("duts:\n  - description: no name\n").unwrap_err().0;
    assert_eq!(errs[0].line, Some(2), "{errs:#?}");
    let errs = parse("resources:\n  - name: s\n    mode: shard\n")
        .unwrap_err()
        .0;
    assert_eq!(errs[0].line, Some(3), "{errs:#?}");
}

#[test]
fn missing_file_is_an_error_not_a_crash() {
    let errs = lab::load(Path::new("/nonexistent/lab.yaml")).unwrap_err().0;
    assert!(errs[0].message.contains("cannot read"));
}

#[test]
fn stormtest_search_with_wildcards() {
    let lab = lab::load(&demo_lab()).unwrap();
    let names = |terms: &[&str]| -> Vec<String> {
        lab.find(terms)
            .unwrap()
            .iter()
            .map(|d| d.name.clone())
            .collect()
    };
    assert_eq!(names(&["ModelName==TP*", "Manufacturer==Acme"]).len(), 8);
    assert_eq!(
        names(&["model==gx-*"]),
        ["stb-09", "stb-10", "stb-11", "stb-12"]
    );
    assert_eq!(names(&["TypeName==router", "Slot==8"]), ["rtr-02"]);
    assert_eq!(names(&["Rack==rack-a", "Tag==pvr"]), ["stb-05", "stb-06"]);
    assert_eq!(names(&["SerialNumber==*00003"]), ["stb-03"]);
    assert!(names(&["Name==TP*"]).is_empty());
    assert_eq!(names(&["Name==*"]).len(), lab.def.duts.len());
    assert!(matches!(
        lab.find(&["Manufactuer==Acme"]),
        Err(SearchError::UnknownField { suggestion: Some(s), .. }) if s == "Manufacturer"
    ));
    assert!(matches!(
        lab.find(&["IRName==x"]),
        Err(SearchError::NotRecorded(_))
    ));
    assert!(matches!(
        lab.find(&["Name=stb"]),
        Err(SearchError::BadTerm(_))
    ));
}

#[test]
fn numbers_beyond_their_range_are_reported_with_schema_and_semantic_problems_at_once() {
    let file = repo().join("tests/fixtures/bounds/out-of-range-lab.yaml");
    let errs = lab::load(&file).unwrap_err().0;
    let got: Vec<(Option<u32>, Option<&str>, &str)> = errs
        .iter()
        .map(|d| (d.line, d.key_path.as_deref(), d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Some(5),
                Some("racks[0].slots"),
                "must be at most 1024 (found 5000)"
            ),
            // Above both the bound and the rack's slots: the semantic message, which says more.
            (
                Some(10),
                Some("duts[0].location.slot"),
                "DUT `dut-1` is in slot 2000 of rack `rack-b`, which has slots 1-4"
            ),
            (
                Some(14),
                Some("resources[0].capacity"),
                "must be at most 10000 (found 4000000000)"
            ),
        ],
        "{errs:#?}"
    );
    assert!(errs.iter().all(|d| d.file == file));
}

#[test]
fn a_launch_takes_an_ats_that_holds_every_dut_or_its_duts_rack() {
    use testbay_core::lab::AtsError;
    use testbay_core::plan::DutTarget;
    let lab = lab::load(&demo_lab()).unwrap();
    let duts = |names: &[&str]| -> Vec<DutTarget> {
        names
            .iter()
            .map(|n| DutTarget {
                name: n.to_string(),
                ..Default::default()
            })
            .collect()
    };
    // stb-01 and stb-02 sit in rack-a, stb-07 in rack-b.
    assert_eq!(
        lab.launch_ats(None, &duts(&["stb-01", "stb-02"])),
        Ok(Some("rack-a".into()))
    );
    assert_eq!(
        lab.launch_ats(Some("rack-a"), &duts(&["stb-01"])),
        Ok(Some("rack-a".into()))
    );
    assert_eq!(
        lab.launch_ats(Some("rack-b"), &[]),
        Ok(Some("rack-b".into()))
    );
    assert_eq!(lab.launch_ats(None, &[]), Ok(None));
    let e = lab
        .launch_ats(Some("rack-z"), &duts(&["stb-01"]))
        .unwrap_err();
    assert!(matches!(e, AtsError::Unknown { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "ATS `rack-z` is not a rack of the lab (did you mean `rack-a`?); its racks: rack-a, rack-b"
    );
    assert_eq!(
        lab.launch_ats(Some("bench-3"), &[])
            .unwrap_err()
            .to_string(),
        "ATS `bench-3` is not a rack of the lab; its racks: rack-a, rack-b"
    );
    assert_eq!(
        lab.launch_ats(Some("rack-b"), &duts(&["stb-07", "stb-01"]))
            .unwrap_err()
            .to_string(),
        "ATS `rack-b` does not hold DUT `stb-01`: it sits in rack `rack-a`"
    );
    // DUTs in several racks: no one ATS, each lane runs on its DUT's rack.
    assert_eq!(lab.launch_ats(None, &duts(&["stb-01", "stb-07"])), Ok(None));
}

#[test]
fn a_lab_file_syntax_error_points_at_the_open_bracket() {
    // The lab file goes through the same loader as packs: the `[` left open on line 12 is
    // named, not the end of the file where the parser gave up.
    let path = repo().join("tests/fixtures/syntax/lab-unclosed.yaml");
    let e = lab::load(&path).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(12), Some(11)), "{}", e[0]);
    assert!(
        e[0].message.starts_with(
            "YAML syntax: unclosed `[`: the list opened here is still open where the parser stopped; close it with `]` (the parser stopped at 14:1: "
        ),
        "{}",
        e[0].message
    );
}

/// A named pipe as the lab file is named, not waited on (opening it for reading waited
/// for a writer forever).
#[test]
fn a_named_pipe_as_lab_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let f = file.clone();
    std::thread::spawn(move || {
        let _ = tx.send(lab::load(&f).map(|_| ()));
    });
    let errs = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("lab::load waited on the named pipe")
        .unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].file, file);
    assert_eq!(errs.0[0].message, "is a named pipe, not a file");
}
