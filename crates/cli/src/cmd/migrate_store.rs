//! `testbay migrate-store --from sqlite://PATH --to postgres://…`: move a single seat's
//! history into a lab's database (`store::postgres::import`): every table copied in one
//! transaction, then each table's row count and content hash compared on both sides and
//! printed. Exit 1 when any table differs. A store-to-store tool: it opens the two
//! stores, not a console (no run, pack or lab is involved).

use testbay_engine::store::postgres::import::{import_sqlite, ImportError, TableCheck};
use testbay_engine::store::StoreLocation;

use super::Ctx;
use crate::term::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// The SQLite store to copy: sqlite://PATH [default: sqlite://DATA_DIR/testbay.db]
    #[arg(long, value_name = "URL")]
    from: Option<StoreLocation>,
    /// The PostgreSQL database to copy into: postgres://USER@HOST[:PORT]/DB
    #[arg(long, value_name = "URL")]
    to: StoreLocation,
    /// Replace what the target holds (else a target with rows is refused)
    #[arg(long)]
    force: bool,
    /// Print the comparison as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let from = args
        .from
        .unwrap_or_else(|| StoreLocation::default_in(&ctx.data_dir));
    let StoreLocation::Sqlite(path) = &from else {
        anyhow::bail!(
            "--from: {} is not a SQLite store (sqlite://PATH)",
            from.display()
        );
    };
    let StoreLocation::Postgres(url) = &args.to else {
        anyhow::bail!(
            "--to: {} is not a PostgreSQL database (postgres://…)",
            args.to.display()
        );
    };
    if !path.is_file() {
        anyhow::bail!("--from: no SQLite store at {}", path.display());
    }
    let checks = match import_sqlite(path, url, args.force) {
        Ok(c) => c,
        Err(e @ ImportError::NotEmpty(_)) => {
            eprintln!("testbay migrate-store: {e}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    let same = checks.iter().all(TableCheck::same);
    if args.json {
        print_json(&serde_json::json!({
            "from": from.display(),
            "to": args.to.display(),
            "same": same,
            "tables": checks,
        }))?;
    } else {
        println!("{} -> {}", from.display(), args.to.display());
        println!(
            "{:<22} {:>9} {:>9}  {:<16} {:<16}",
            "TABLE", "FROM", "TO", "SHA256 FROM", "SHA256 TO"
        );
        for c in &checks {
            println!(
                "{:<22} {:>9} {:>9}  {:<16} {:<16}{}",
                c.table,
                c.source_rows,
                c.target_rows,
                &c.source_sha256[..16],
                &c.target_sha256[..16],
                if c.same() { "" } else { "  DIFFERS" }
            );
        }
        println!(
            "{}",
            if same {
                "every table copied: same rows, same content"
            } else {
                "some tables differ: see DIFFERS above"
            }
        );
    }
    Ok(if same { 0 } else { 1 })
}
