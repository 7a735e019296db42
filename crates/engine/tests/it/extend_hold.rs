//! The book from Lab: `ExtendHold` (an operator's hold ends later when nothing else is
//! booked there; bounds and a run's reservation refused naming the key) and
//! `ReservationHistory` (the timeline's past).

use testbay_engine::api::{
    parse_request, ApiError, Console, ConsolePaths, ErrorCode, LocalConsole, Response,
};

use crate::support::{demo_lab, repo};

async fn call(c: &LocalConsole, json: &str) -> Result<Response, ApiError> {
    c.dispatch(parse_request(json.as_bytes())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_hold_is_extended_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.path().join("data"),
        pack_roots: vec![repo().join("packs")],
        lab_file: Some(demo_lab()),
    })
    .unwrap();
    let hold = |who: &str, from: Option<i64>| {
        let from = from.map_or(String::new(), |f| format!(r#","from_ms":{f}"#));
        format!(r#"{{"cmd":"hold","resource":"stb-03","by":"{who}","duration_s":600{from}}}"#)
    };
    let Response::Hold(first) = call(&c, &hold("alice", None)).await.unwrap() else {
        panic!()
    };
    let extend =
        |id: &str, s: &str| format!(r#"{{"cmd":"extend_hold","id":"{id}","duration_s":{s}}}"#);
    let id = first.id.to_string();

    let Response::ExtendHold(longer) = call(&c, &extend(&id, "300")).await.unwrap() else {
        panic!()
    };
    assert_eq!(longer.end, first.end + 300_000);
    assert_eq!(longer.start, first.start);

    // Bounds name the key.
    for bad in ["0", "-5", "2592001"] {
        let e = call(&c, &extend(&id, bad)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}: {e}");
        assert!(e.to_string().contains("duration_s"), "{bad}: {e}");
    }
    // The whole hold (900 s so far) stays at most 30 days long.
    let e = call(&c, &extend(&id, "2591500")).await.unwrap_err();
    assert!(e.to_string().contains("duration_s"), "{e}");
    let e = call(&c, &extend("999999", "60")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("id"), "{e}");

    // A hold booked right after it: no room to extend into.
    let Response::Hold(next) = call(&c, &hold("bob", Some(longer.end))).await.unwrap() else {
        panic!()
    };
    let e = call(&c, &extend(&id, "60")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{e}");
    let Response::Reservations(book) = call(&c, r#"{"cmd":"reservations"}"#).await.unwrap() else {
        panic!()
    };
    let now = book
        .resources
        .iter()
        .flat_map(|r| r.holders.iter())
        .find(|r| r.id == first.id)
        .unwrap()
        .end;
    assert_eq!(now, longer.end, "a refused extension changes nothing");
    assert_eq!(next.start, longer.end);
}

/// `ReservationHistory`: a released hold is the timeline's past, with why it ended;
/// `hours` is bounded naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_reservations_are_the_timelines_past() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.path().join("data"),
        pack_roots: vec![repo().join("packs")],
        lab_file: Some(demo_lab()),
    })
    .unwrap();
    let Response::ReservationHistory(none) = call(&c, r#"{"cmd":"reservation_history","hours":2}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(none.is_empty(), "{none:?}");
    let Response::Hold(h) = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-05","by":"carol","duration_s":600}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    call(&c, &format!(r#"{{"cmd":"release","id":"{}"}}"#, h.id))
        .await
        .unwrap();
    // The book writes its history behind the answer: wait for it (bounded: 30 s).
    let mut past = Vec::new();
    for _ in 0..600 {
        let Response::ReservationHistory(p) =
            call(&c, r#"{"cmd":"reservation_history","hours":2}"#)
                .await
                .unwrap()
        else {
            panic!()
        };
        past = p;
        if !past.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(past.len(), 1, "{past:?}");
    assert_eq!(past[0].reservation.id, h.id);
    assert_eq!(&*past[0].reservation.resource, "stb-05");
    assert!(past[0].ended_ms >= h.start);
    assert!(!past[0].reason.is_empty());
    for bad in ["0", "-1", "25"] {
        let e = call(
            &c,
            &format!(r#"{{"cmd":"reservation_history","hours":{bad}}}"#),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
        assert!(e.message.contains("hours"), "{bad}: {e}");
    }
}
