//! `testbay report`: a task's shell side of the reporter (`engine::exec::reporter`). Each
//! command connects to `TESTBAY_REPORTER`, says hello with `TESTBAY_REPORTER_TOKEN`, sends
//! one message and prints the console's error if it refuses it (exit status 1). Outside a
//! Testbay task it warns and does nothing (exit status 0), so a script runs anywhere.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use testbay_engine::measure::Comparison;
use testbay_engine::reporter::{Reply, SOCKET_ENV, TOKEN_ENV};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Open a section inside the section opened last
    SectionStart {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Close the section opened last, which must be NAME
    SectionStop {
        name: String,
        /// Its result [default: Passed]
        #[arg(long)]
        result: Option<String>,
        #[arg(long)]
        message: Option<String>,
    },
    /// Add a line of text to the open section (or the task)
    Detail { text: String },
    /// Add a key and value (JSON, or else a string) to the open section (or the task)
    Extra { key: String, value: String },
    /// Record a measurement, judged against its limits
    Measure {
        name: String,
        #[arg(allow_negative_numbers = true)]
        value: f64,
        #[arg(long)]
        units: Option<String>,
        #[arg(long, allow_negative_numbers = true)]
        low: Option<f64>,
        #[arg(long, allow_negative_numbers = true)]
        high: Option<f64>,
        /// EQ, NE, GT, GE, LT, LE, GELE, GTLT, GELT, GTLE or LOG [default: from the limits]
        #[arg(long, value_parser = parse_comparison)]
        comparison: Option<Comparison>,
    },
    /// Attach a file from the artifacts folder (TESTBAY_ARTIFACTS)
    Attach { path: String },
    /// Set the task's result (a result file, when written, wins)
    Result {
        result: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Ask the operator and print the answer; exit status 3 when nobody answered in time
    Prompt {
        message: String,
        /// An answer it takes (repeat for more); without any, free text
        #[arg(long = "choice")]
        choices: Vec<String>,
        /// A regular expression the whole free-text answer must match
        #[arg(long)]
        pattern: Option<String>,
        /// Seconds to wait [default: a day]
        #[arg(long)]
        timeout: Option<f64>,
    },
}

fn parse_comparison(s: &str) -> Result<Comparison, String> {
    Comparison::parse(s).ok_or_else(|| {
        format!("`{s}` is not a comparison (EQ, NE, GT, GE, LT, LE, GELE, GTLT, GELT, GTLE, LOG)")
    })
}

/// How long the console may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

pub fn run(args: Args, _ctx: &Ctx) -> anyhow::Result<i32> {
    let msg = match args.what {
        What::SectionStart { name, description } => {
            json!({"type": "section_start", "name": name, "description": description})
        }
        What::SectionStop {
            name,
            result,
            message,
        } => {
            json!({"type": "section_stop", "name": name, "result": result, "message": message})
        }
        What::Detail { text } => json!({"type": "detail", "text": text}),
        What::Extra { key, value } => {
            let value = serde_json::from_str::<Value>(&value).unwrap_or(Value::String(value));
            json!({"type": "extra", "key": key, "value": value})
        }
        What::Measure {
            name,
            value,
            units,
            low,
            high,
            comparison,
        } => json!({
            "type": "measurement", "name": name, "value": value, "units": units,
            "low": low, "high": high, "comparison": comparison,
        }),
        What::Attach { path } => {
            // Relative to where the command runs, as a shell user means it.
            let p = std::path::Path::new(&path);
            let path = if p.is_relative() {
                std::env::current_dir()
                    .map(|d| d.join(p).display().to_string())
                    .unwrap_or(path)
            } else {
                path
            };
            json!({"type": "attach", "path": path})
        }
        What::Result { result, message } => {
            json!({"type": "set_result", "result": result, "message": message})
        }
        What::Prompt {
            message,
            choices,
            pattern,
            timeout,
        } => json!({
            "type": "prompt", "message": message,
            "choices": (!choices.is_empty()).then_some(choices),
            "pattern": pattern, "timeout_s": timeout,
        }),
    };
    let is_prompt = msg["type"] == "prompt";
    let (Some(socket), Some(token)) = (std::env::var_os(SOCKET_ENV), std::env::var(TOKEN_ENV).ok())
    else {
        say!(
            "testbay report: not inside a Testbay task ({SOCKET_ENV} is not set); nothing reported"
        );
        return Ok(if is_prompt { 3 } else { 0 });
    };
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "cannot connect to the reporter at {}",
            socket.to_string_lossy()
        )
    })?;
    let mut rd = BufReader::new(stream.try_clone()?);
    let mut wr = stream;
    for (i, m) in [
        json!({"type": "hello", "token": token, "pid": std::process::id()}),
        msg,
    ]
    .into_iter()
    .enumerate()
    {
        // A prompt waits for the operator as long as it takes (its own timeout ends it).
        let wait = (!(is_prompt && i == 1)).then_some(ANSWER_WITHIN);
        wr.set_read_timeout(wait)?;
        let mut line = serde_json::to_vec(&strip_nulls(m))?;
        line.push(b'\n');
        wr.write_all(&line)?;
        let mut answer = String::new();
        rd.read_line(&mut answer)
            .context("the reporter did not answer")?;
        let reply: Reply = serde_json::from_str(&answer)
            .with_context(|| format!("the reporter's answer is not a reply: {answer:?}"))?;
        if let Some(e) = reply.error.filter(|_| !reply.ok) {
            say!("testbay report: {} ({})", e.message, e.code);
            return Ok(1);
        }
        if let Some(a) = reply.answer {
            if a.timed_out {
                say!("testbay report: nobody answered in time");
                return Ok(3);
            }
            out!("{}", a.text);
        }
    }
    Ok(0)
}

/// Absent options are left out rather than sent as `null`.
fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, v| !v.is_null());
    }
    v
}
