//! `testbay webhook add|list|rm|deliveries`: the console's webhooks, through the console
//! like the other transports (`Request::AddWebhook`, `ListWebhooks`, `RemoveWebhook`,
//! `WebhookDeliveries`). A console serving the same data directory uses a new webhook
//! from its next event on: it reads the webhooks at every event.

use clap::Subcommand;
use testbay_engine::api::{Request, Response, Webhook, WebhookDelivery, WebhookEvent};
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};
use crate::term::{print_json, safe};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: WebhookCmd,
}

#[derive(Subcommand)]
enum WebhookCmd {
    /// Add a webhook; prints its id
    Add {
        /// Receiver URL, http:// only
        #[arg(long)]
        url: String,
        /// Event to send: run_finished, run_failed, dut_bad, schedule_missed (repeat, or
        /// comma-separate)
        #[arg(long = "event", required = true, value_delimiter = ',', value_parser = parse_event)]
        events: Vec<WebhookEvent>,
        /// Shared secret: each body is signed, `X-Testbay-Signature: sha256=<hex HMAC>`
        #[arg(long)]
        secret: Option<String>,
        /// Store it switched off
        #[arg(long)]
        disabled: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the webhooks (secrets are never shown)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook and its deliveries
    Rm {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// The last deliveries, newest first, and how each went
    Deliveries {
        /// Only this webhook's
        id: Option<i64>,
        /// How many (1 to 1,000)
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

fn parse_event(s: &str) -> Result<WebhookEvent, String> {
    WebhookEvent::parse(s.trim()).ok_or_else(|| {
        format!(
            "unknown event `{s}` ({})",
            WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
        )
    })
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    let call = |r: Request| session.call(r).map_err(|e| anyhow::anyhow!(error_text(&e)));
    match args.cmd {
        WebhookCmd::Add {
            url,
            events,
            secret,
            disabled,
            json,
        } => {
            let hook = match call(Request::AddWebhook {
                url,
                events,
                secret,
                enabled: !disabled,
            })? {
                Response::AddWebhook(h) => h,
                other => return Err(unexpected("add_webhook", other)),
            };
            if json {
                print_json(&hook)?;
            } else {
                out!("{}", hook.id);
            }
        }
        WebhookCmd::List { json } => {
            let hooks = match call(Request::ListWebhooks)? {
                Response::ListWebhooks(h) => h,
                other => return Err(unexpected("list_webhooks", other)),
            };
            if json {
                print_json(&hooks)?;
            } else {
                print_hooks(&hooks);
            }
        }
        WebhookCmd::Rm { id, json } => {
            match call(Request::RemoveWebhook { id })? {
                Response::RemoveWebhook { .. } => {}
                other => return Err(unexpected("remove_webhook", other)),
            }
            if json {
                print_json(&serde_json::json!({ "removed": id }))?;
            } else {
                out!("removed webhook {id}");
            }
        }
        WebhookCmd::Deliveries { id, limit, json } => {
            let list = match call(Request::WebhookDeliveries {
                webhook_id: id,
                limit: Some(limit),
            })? {
                Response::WebhookDeliveries(d) => d,
                other => return Err(unexpected("webhook_deliveries", other)),
            };
            if json {
                print_json(&list)?;
            } else {
                print_deliveries(&list);
            }
        }
    }
    Ok(0)
}

fn print_hooks(hooks: &[Webhook]) {
    if hooks.is_empty() {
        out!("no webhooks");
        return;
    }
    out!(
        "{:>4}  {:<8}  {:<6}  {:<44}  URL",
        "ID",
        "STATE",
        "SIGNED",
        "EVENTS"
    );
    for h in hooks {
        let events: Vec<&str> = h.events.iter().map(|e| e.as_str()).collect();
        out!(
            "{:>4}  {:<8}  {:<6}  {:<44}  {}",
            h.id,
            if h.enabled { "enabled" } else { "off" },
            if h.has_secret { "yes" } else { "no" },
            events.join(","),
            safe(&h.url)
        );
    }
}

fn print_deliveries(list: &[WebhookDelivery]) {
    if list.is_empty() {
        out!("no deliveries");
        return;
    }
    for d in list {
        out!(
            "{:>5}  hook {:<3}  {}  {:<15}  {:<9}  tries {}  {}{}",
            d.id,
            d.webhook_id,
            fmt_ms(d.created_ms),
            d.event.as_str(),
            d.status.as_str(),
            d.attempts,
            d.http_status
                .map(|s| format!("HTTP {s}  "))
                .unwrap_or_default(),
            safe(d.error.as_deref().unwrap_or(""))
        );
    }
}
