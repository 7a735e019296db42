//! `testbay packs push|publish|library`: the lab's pack library through a console (the
//! data directory's, or a lab server's with `--server URL --token T`).
//!
//! `push DIR` checks the pack here first, so a broken pack is refused with every problem
//! naming its file, line and key before anything is sent; then its files travel as one
//! archive (`pack::archive`, within `bounds::MAX_PACK_BYTES`; `Console::push_pack_as`:
//! to a lab server as the body of `POST /api/packs`, within
//! `bounds::MAX_PACK_ARCHIVE_BYTES`), which the console checks again and stores by content hash, the caller its
//! owner. `library` lists what the console offers: its pack folders and the library's
//! versions the caller sees, each marked with where it comes from.

use std::path::Path;

use testbay_engine::api::{BookUse, ConsoleOptions, ConsolePaths, Request, Response};
use testbay_engine::pack::view::PackSummary;
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

fn session(ctx: &Ctx) -> anyhow::Result<Session> {
    Session::open(
        ctx,
        ConsolePaths {
            lab_file: None,
            ..ctx.paths.clone()
        },
        ConsoleOptions {
            book: BookUse::None,
            owner_label: "testbay packs",
            watch_packs: false,
            recover: false,
            health_checks: false,
            serve_queue: false,
            ..ctx.options()
        },
    )
}

/// Exit status of a refused request: its problems printed, 1.
fn refused(e: &testbay_engine::api::ApiError) -> i32 {
    say!("{}: {}", e.code.as_str(), error_text(e));
    1
}

pub fn push(ctx: &Ctx, dir: &Path, private: bool, json: bool) -> anyhow::Result<i32> {
    let pack = match testbay_engine::pack::load(dir) {
        Ok(p) => p,
        Err(errs) => {
            for d in &errs.diagnostics {
                out!("{d}");
            }
            say!(
                "pack {} not pushed: {} problem(s)",
                dir.display(),
                errs.diagnostics.len()
            );
            return Ok(1);
        }
    };
    let (bytes, _) = testbay_engine::pack::archive::pack_dir(&pack.dir)
        .map_err(|e| anyhow::anyhow!("cannot read the pack {}: {e}", dir.display()))?;
    let packed = bytes.len();
    let session = session(ctx)?;
    let pushed = match session.push_pack(bytes, private) {
        Ok(Response::PushPack(p)) => p,
        Ok(other) => return Err(unexpected("push_pack", other)),
        Err(e) => return Ok(refused(&e)),
    };
    if json {
        crate::term::print_json(&pushed)?;
        return Ok(0);
    }
    let s = &pushed.pack;
    let hash = s.content_hash.as_deref().unwrap_or("?");
    let what = match &s.library {
        Some(l) if l.private => "private",
        _ => "public",
    };
    if pushed.unchanged {
        out!(
            "{} {} is already in the lab's library with this content ({hash})",
            s.name,
            s.version.as_deref().unwrap_or("?")
        );
    } else {
        out!(
            "pushed {} {} ({what}, {} bytes packed, {hash})",
            s.name,
            s.version.as_deref().unwrap_or("?"),
            packed
        );
    }
    Ok(0)
}

pub fn publish(ctx: &Ctx, pack: String, json: bool) -> anyhow::Result<i32> {
    let session = session(ctx)?;
    let s = match session.call(Request::PublishPack { pack }) {
        Ok(Response::PublishPack(s)) => s,
        Ok(other) => return Err(unexpected("publish_pack", other)),
        Err(e) => return Ok(refused(&e)),
    };
    if json {
        crate::term::print_json(&s)?;
    } else {
        out!(
            "{} {} is public",
            s.name,
            s.version.as_deref().unwrap_or("?")
        );
    }
    Ok(0)
}

pub fn library(ctx: &Ctx, json: bool) -> anyhow::Result<i32> {
    let session = session(ctx)?;
    let packs = match session.call(Request::ListPacks) {
        Ok(Response::ListPacks(p)) => p,
        Ok(other) => return Err(unexpected("list_packs", other)),
        Err(e) => return Ok(refused(&e)),
    };
    if json {
        crate::term::print_json(&packs)?;
        return Ok(0);
    }
    if packs.is_empty() {
        out!("no packs");
    }
    for s in &packs {
        out!("{}", line(s));
    }
    Ok(0)
}

/// One pack: name, version, state, where it comes from.
fn line(s: &PackSummary) -> String {
    let state = if s.ok {
        format!("ok  {} task(s)", s.task_count)
    } else {
        format!("BROKEN ({} problem(s))", s.diagnostics.len())
    };
    let origin = match &s.library {
        None => format!("disk  {}", s.dir),
        Some(l) => format!(
            "library  {}  by {}  pushed {}",
            if l.private { "private" } else { "public" },
            l.owner,
            fmt_ms(l.pushed_ms)
        ),
    };
    format!(
        "{} {}  {state}  {origin}",
        s.name,
        s.version.as_deref().unwrap_or("?")
    )
}
