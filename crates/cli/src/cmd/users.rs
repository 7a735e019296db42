//! `testbay users`: the lab's users and their roles. `add` prints the new user's token
//! once (the store keeps only its SHA-256); `list` never shows a token, only the first
//! digits of its hash. Works on the data directory's store, as its local admin.

use anyhow::bail;
use clap::Subcommand;
use testbay_engine::api::{BookUse, ConsoleOptions, ConsolePaths, Request, Response, Role, User};
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: UsersCmd,
    /// Print the answer as JSON
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Add a user; prints its token once (give it to the user)
    Add {
        name: String,
        #[arg(long, value_parser = ["viewer", "operator", "admin", "agent"])]
        role: String,
    },
    /// Every user with role, creation and revocation (never a token)
    List,
    /// Revoke a user's token (by name or id): its next request is refused
    Revoke { user: String },
    /// Give a user (by name or id) another role
    Role {
        user: String,
        #[arg(value_parser = ["viewer", "operator", "admin", "agent"])]
        role: String,
    },
}

/// A console on the data directory that only reads and writes the store.
pub(crate) fn session(ctx: &Ctx, label: &'static str) -> anyhow::Result<Session> {
    Session::open(
        ctx,
        ConsolePaths {
            pack_roots: Vec::new(),
            lab_file: None,
            ..ctx.paths.clone()
        },
        ConsoleOptions {
            book: BookUse::None,
            owner_label: label,
            watch_packs: false,
            recover: false,
            health_checks: false,
            serve_queue: false,
            ..ctx.options()
        },
    )
}

fn role(s: &str) -> Role {
    Role::parse(s).unwrap_or(Role::Viewer)
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = session(ctx, "testbay users")?;
    let request = match args.cmd {
        UsersCmd::Add { name, role: r } => Request::AddUser {
            name,
            role: role(&r),
        },
        UsersCmd::List => Request::ListUsers,
        UsersCmd::Revoke { user } => Request::RevokeUser { user },
        UsersCmd::Role { user, role: r } => Request::SetUserRole {
            user,
            role: role(&r),
        },
    };
    match session.call(request) {
        Ok(Response::AddUser { user, token }) => {
            if args.json {
                crate::term::print_json(&serde_json::json!({ "user": user, "token": token }))?;
            } else {
                out!(
                    "added {} ({}), id {}",
                    user.name,
                    user.role.as_str(),
                    user.id
                );
                out!("token (shown only now; give it to {}):", user.name);
                out!("{token}");
            }
        }
        Ok(Response::ListUsers(users)) => {
            if args.json {
                crate::term::print_json(&users)?;
            } else if users.is_empty() {
                out!("no users: `testbay serve` runs as a single seat");
            } else {
                for u in &users {
                    print_user(u);
                }
            }
        }
        Ok(Response::RevokeUser(u) | Response::SetUserRole(u)) => {
            if args.json {
                crate::term::print_json(&u)?;
            } else {
                print_user(&u);
            }
        }
        Ok(other) => return Err(unexpected("users", other)),
        Err(e) => bail!("{}", error_text(&e)),
    }
    Ok(0)
}

fn print_user(u: &User) {
    let revoked = u
        .revoked_ms
        .map(|t| format!("  revoked {}", fmt_ms(t)))
        .unwrap_or_default();
    out!(
        "{:>4}  {:<20} {:<8}  token {}…  added {}{}",
        u.id,
        u.name,
        u.role.as_str(),
        u.token_id,
        fmt_ms(u.created_ms),
        revoked
    );
}
