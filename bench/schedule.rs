//! Schedule calendar benchmark: the next firing of 10,000 schedules of mixed types and
//! time zones (issue 12's figure, target ≤ 50 ms).
//!
//! `cargo bench -p testbay-engine --bench schedule` (env `SCHEDULE_BENCH_N` changes the
//! number of schedules). Prints the time to validate them, and the time for one pass of
//! next firings over all of them (median and worst of several passes, each at another
//! "now", with a tenth of the schedules near a daylight-saving change). Asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use testbay_engine::schedule::{
    CatchUp, DayName, Schedule, ScheduleSpec, ScheduleType, TimeWindow,
};
use testbay_engine::timefmt::parse_utc;

const ZONES: [&str; 8] = [
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "UTC",
];
const KINDS: [ScheduleType; 6] = [
    ScheduleType::OneOff,
    ScheduleType::Daily,
    ScheduleType::Weekly,
    ScheduleType::Weekdays,
    ScheduleType::Weekends,
    ScheduleType::Loop,
];
const DAYS: [DayName; 7] = [
    DayName::Mon,
    DayName::Tue,
    DayName::Wed,
    DayName::Thu,
    DayName::Fri,
    DayName::Sat,
    DayName::Sun,
];
const PASSES: usize = 21;

fn specs(n: usize) -> Vec<ScheduleSpec> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    (0..n)
        .map(|i| {
            let kind = KINDS[i % KINDS.len()];
            // Most start in the first half of 2026; a tenth on 2026-03-08 (US DST) or
            // 2026-03-29 (EU DST) at a time inside the gap.
            let (date, hour) = if i % 10 == 0 {
                let day = if i % 20 == 0 { 8 } else { 29 };
                (format!("2026-03-{day:02}"), 2)
            } else {
                let day = rng.gen_range(1..=28);
                let month = rng.gen_range(1..=6);
                (format!("2026-{month:02}-{day:02}"), rng.gen_range(0..24))
            };
            let minute = rng.gen_range(0..60);
            let window = (i % 3 == 0).then(|| TimeWindow {
                from: format!("{:02}:00", (hour + 22) % 24),
                to: format!("{:02}:00", (hour + 6) % 24),
            });
            let ending = rng.gen_range(0..3);
            ScheduleSpec {
                kind,
                start: format!("{date}T{hour:02}:{minute:02}"),
                end: (ending == 1).then(|| "2027-06-30T00:00".to_string()),
                repeat_count: (ending == 2 && kind != ScheduleType::OneOff)
                    .then(|| rng.gen_range(1..500)),
                repeat_rate: (kind == ScheduleType::Daily).then(|| rng.gen_range(1..8)),
                days: if kind == ScheduleType::Weekly {
                    DAYS.iter()
                        .copied()
                        .filter(|_| rng.gen_bool(0.4))
                        .chain([DayName::Wed])
                        .collect()
                } else {
                    Vec::new()
                },
                time_zone: ZONES[rng.gen_range(0..ZONES.len())].to_string(),
                window,
                catch_up: CatchUp::Once,
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n: usize = std::env::var("SCHEDULE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let specs = specs(n);
    let now0 = parse_utc("2026-03-01 00:00").expect("a valid time");

    let t = Instant::now();
    let schedules: Vec<Schedule> = specs
        .iter()
        .map(|s| s.validate(now0).expect("bench specs are valid"))
        .collect();
    let validate = t.elapsed();

    let mut passes = Vec::with_capacity(PASSES);
    let mut firing = 0usize;
    for p in 0..PASSES {
        // From 2026-03-01 into the summer, across both spring-forward days.
        let now = now0 + p as i64 * 7 * 86_400_000 + 3_600_000 * (p as i64 % 24);
        let t = Instant::now();
        for s in &schedules {
            if black_box(s.next_firing(black_box(now), 3)).is_some() {
                firing += 1;
            }
        }
        passes.push(t.elapsed());
    }
    passes.sort();
    let median = passes[PASSES / 2];
    let worst = passes[PASSES - 1];

    println!(
        "schedule calendar, {n} schedules (6 types, {} zones)",
        ZONES.len()
    );
    println!("  validate all:            {:8.2} ms", ms(validate));
    println!(
        "  next firing of all:      {:8.2} ms median, {:.2} ms worst of {PASSES} passes (target <= 50 ms)",
        ms(median),
        ms(worst)
    );
    println!(
        "  per schedule:            {:8.2} us median",
        ms(median) * 1e3 / n as f64
    );
    println!(
        "  schedules with a next firing: {:.0}% on average",
        100.0 * firing as f64 / (n * PASSES) as f64
    );
}
