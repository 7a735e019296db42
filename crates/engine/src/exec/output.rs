//! A phase's output on its way to the log file and live viewers: read from the
//! non-blocking pipe on the phase's own task, split into lines (long ones cut), written to
//! the capped log file and forwarded live at a bounded rate.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::outcome::cap_string;
use super::{ExecLimits, LiveLog, LiveSink, LogStats, DROPPED_EVERY, LOG_FLUSH_EVERY};

/// Output quiet for this long counts as idle: what is buffered is written out at once.
const LOG_IDLE: Duration = Duration::from_millis(20);

/// The read end of a phase's output pipe, made non-blocking.
pub(super) fn set_nonblocking(reader: std::io::PipeReader) -> std::io::Result<std::io::PipeReader> {
    let fd = reader.as_raw_fd();
    // SAFETY: plain fcntl on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(reader)
}

pub(super) fn lock<'a, 'l>(
    out: &'a std::sync::Mutex<Output<'l>>,
) -> std::sync::MutexGuard<'a, Output<'l>> {
    out.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a phase's output is left in its pipe before it is read as it comes. A phase
/// that ends sooner is read once, at its end, and its pipe is never watched: most tasks
/// of a big pack are short, and each wake-up costs more than reading. Live viewers see
/// a phase's first lines at most this late; 64 KiB fit in the pipe meanwhile.
pub(super) const QUIET_START: Duration = Duration::from_millis(5);

/// Read the phase's output as it comes, from `after` on, until EOF (at once with no
/// reader). Between two reads the output is not borrowed, so the caller may add notes to
/// the log while this waits. Buffered log lines are written out once the output is quiet
/// for [`LOG_IDLE`].
pub(super) async fn pump(
    reader: Option<&std::io::PipeReader>,
    out: &std::sync::Mutex<Output<'_>>,
    after: Duration,
) {
    let Some(reader) = reader else { return };
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    // SAFETY: `reader` outlives this registration (it is borrowed for this future's life).
    let watched = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            std::os::fd::AsFd::as_fd(reader),
            tokio::io::Interest::READABLE,
        )
    } {
        Ok(r) => r,
        Err(e) => {
            let e = std::io::Error::from(e);
            lock(out).note(&format!("cannot watch the phase's output: {e}"));
            return;
        }
    };
    loop {
        let quiet_for = lock(out).w.poll_timeout(-1);
        let ready = if quiet_for < 0 {
            watched.readable().await
        } else {
            tokio::select! {
                r = watched.readable() => r,
                _ = tokio::time::sleep(Duration::from_millis(quiet_for as u64)) => {
                    lock(out).w.idle();
                    continue;
                }
            }
        };
        let Ok(mut ready) = ready else { return };
        let mut o = lock(out);
        match ready.try_io(|_| o.read_once(reader)) {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            // Not readable after all: readiness was cleared, wait again.
            Err(_) => {}
        }
    }
}

/// Largest read of a phase's output.
const READ_MAX: usize = 64 * 1024;

/// A phase's output on its way to the log file and live viewers: the writer, the read
/// buffer and the line being gathered. Memory stays bounded by the buffer and one line
/// whatever the phase prints.
pub(super) struct Output<'a> {
    w: LineWriter<'a>,
    buf: Vec<u8>,
    line: Vec<u8>,
    cap: usize,
}

impl<'a> Output<'a> {
    pub(super) fn new(log_file: File, limits: &'a ExecLimits, live: Option<LiveSink>) -> Self {
        Output {
            w: LineWriter {
                log: BufWriter::with_capacity(64 * 1024, log_file),
                limits,
                written: 0,
                stats: LogStats::default(),
                live,
                bucket: TokenBucket::new(limits.live_lines_per_sec, limits.live_burst),
                pending_dropped: 0,
                dropped_sent: None,
                unflushed_since: None,
                log_failed: false,
                live_lines: Vec::new(),
            },
            buf: vec![0u8; 4096],
            line: Vec::new(),
            cap: limits.line_cap_bytes.max(16),
        }
    }

    /// One read of the (non-blocking) pipe into the log; `true` at EOF. `WouldBlock`
    /// when nothing is there.
    fn read_once(&mut self, reader: &std::io::PipeReader) -> std::io::Result<bool> {
        let Output { w, buf, line, cap } = self;
        let n = (&mut &*reader).read(buf)?;
        if n == 0 {
            return Ok(true);
        }
        w.take_chunk(&buf[..n], line, *cap);
        // Busy output is read in large pieces; most phases never need them.
        if n == buf.len() && buf.len() < READ_MAX {
            buf.resize(READ_MAX, 0);
        }
        Ok(false)
    }

    /// Read what the pipe holds now, a pipe's worth at most (a process still writing is
    /// left to the watched reading and its drain timeout); `true` if that reached EOF.
    pub(super) fn read_available(&mut self, reader: &std::io::PipeReader) -> bool {
        for _ in 0..16 {
            match self.read_once(reader) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
        false
    }

    /// A line of the console's own in the log (`[testbay] ...`).
    pub(super) fn note(&mut self, text: &str) {
        let _ = writeln!(self.w.log, "[testbay] {text}");
    }

    /// The last line even without its newline, then the figures.
    pub(super) fn finish(mut self) -> LogStats {
        if !self.line.is_empty() {
            self.w.emit(&self.line);
        }
        self.w.finish()
    }
}

struct LineWriter<'a> {
    log: BufWriter<File>,
    limits: &'a ExecLimits,
    written: u64,
    stats: LogStats,
    live: Option<LiveSink>,
    bucket: TokenBucket,
    /// Lines held back from live viewers not yet reported by a `Dropped`.
    pending_dropped: u64,
    /// When the last `Dropped` went out.
    dropped_sent: Option<Instant>,
    /// When the oldest line not yet flushed to the log file was written to its buffer.
    unflushed_since: Option<Instant>,
    log_failed: bool,
    /// Lines for live viewers from the current read, sent together after it.
    live_lines: Vec<String>,
}

impl LineWriter<'_> {
    /// One read's bytes: complete lines are emitted (long ones split at `cap`), the
    /// unfinished end stays in `line`.
    fn take_chunk(&mut self, mut chunk: &[u8], line: &mut Vec<u8>, cap: usize) {
        self.stats.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&chunk[..i]);
                    self.emit_split(line, cap);
                    self.emit(line);
                    line.clear();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    line.extend_from_slice(chunk);
                    self.emit_split(line, cap);
                    chunk = &[];
                }
            }
        }
        self.tick();
    }

    /// Emit full `cap`-sized pieces from the front of `line`, keeping the rest.
    fn emit_split(&mut self, line: &mut Vec<u8>, cap: usize) {
        while line.len() > cap {
            let mut end = cap;
            // Do not cut a UTF-8 sequence in half.
            while end > cap - 4 && (line[end] & 0xC0) == 0x80 {
                end -= 1;
            }
            let rest = line.split_off(end);
            self.emit(line);
            *line = rest;
        }
    }

    fn emit(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        self.stats.lines += 1;
        if !self.stats.truncated && !self.log_failed {
            let need = text.len() as u64 + 1;
            if self.written + need > self.limits.log_cap_bytes {
                self.stats.truncated = true;
                self.unflushed_since.get_or_insert_with(Instant::now);
                let _ = writeln!(
                    self.log,
                    "[testbay] log truncated: the {} byte limit was reached; further output is discarded",
                    self.limits.log_cap_bytes
                );
            } else if self
                .log
                .write_all(text.as_bytes())
                .and_then(|_| self.log.write_all(b"\n"))
                .is_err()
            {
                self.log_failed = true;
            } else {
                self.written += need;
                if self.unflushed_since.is_none() {
                    self.unflushed_since = Some(Instant::now());
                }
            }
        }
        if self.live.is_some() {
            if self.bucket.take() {
                if self.pending_dropped > 0 {
                    self.report_dropped(Instant::now());
                }
                self.live_lines
                    .push(cap_string(&text, self.limits.live_line_cap_bytes));
            } else {
                self.pending_dropped += 1;
                self.stats.live_dropped += 1;
            }
        }
    }

    /// Send the live lines gathered from the current read as one event.
    fn send_live(&mut self) {
        if self.live_lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.live_lines);
        if let Some(sink) = self.live.as_mut() {
            sink(LiveLog::Lines(lines));
        }
    }

    /// Send the held-back count if the last `Dropped` is [`DROPPED_EVERY`] old.
    fn report_dropped(&mut self, now: Instant) {
        if self
            .dropped_sent
            .is_some_and(|t| now.duration_since(t) < DROPPED_EVERY)
        {
            return;
        }
        // Lines already gathered came before the ones held back since.
        self.send_live();
        if let Some(sink) = self.live.as_mut() {
            sink(LiveLog::Dropped(self.pending_dropped));
        }
        self.pending_dropped = 0;
        self.dropped_sent = Some(now);
    }

    /// After a read: flush the log if its oldest buffered line is [`LOG_FLUSH_EVERY`]
    /// old, report held-back lines when due. One clock read per read(2), none per line.
    fn tick(&mut self) {
        self.send_live();
        if self.unflushed_since.is_none() && self.pending_dropped == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .unflushed_since
            .is_some_and(|t| now.duration_since(t) >= LOG_FLUSH_EVERY)
        {
            self.flush_log();
        }
        if self.pending_dropped > 0 {
            self.report_dropped(now);
        }
    }

    /// The output went quiet: write out what is buffered, report held-back lines when due.
    fn idle(&mut self) {
        self.flush_log();
        if self.pending_dropped > 0 {
            self.report_dropped(Instant::now());
        }
    }

    fn flush_log(&mut self) {
        if self.unflushed_since.take().is_some() && self.log.flush().is_err() {
            self.log_failed = true;
        }
    }

    /// `timeout_ms` for poll(2), shortened so that buffered log lines are written once
    /// the output is quiet for [`LOG_IDLE`] and held-back lines are reported when due.
    fn poll_timeout(&self, timeout_ms: i32) -> i32 {
        let mut limit: Option<Duration> = None;
        if self.unflushed_since.is_some() {
            limit = Some(LOG_IDLE);
        }
        if self.pending_dropped > 0 {
            let due = self.dropped_sent.map_or(Duration::ZERO, |t| {
                DROPPED_EVERY.saturating_sub(t.elapsed())
            });
            limit = Some(limit.map_or(due, |l| l.min(due)));
        }
        match limit {
            None => timeout_ms,
            Some(l) => {
                let l = l.as_millis().clamp(1, i32::MAX as u128) as i32;
                if timeout_ms < 0 {
                    l
                } else {
                    timeout_ms.min(l)
                }
            }
        }
    }

    fn finish(mut self) -> LogStats {
        if self.stats.truncated {
            let _ = writeln!(
                self.log,
                "[testbay] {} bytes of output in total; {} bytes written before truncation",
                self.stats.bytes, self.written
            );
        }
        let _ = self.log.flush();
        self.send_live();
        if self.pending_dropped > 0 {
            if let Some(sink) = self.live.as_mut() {
                sink(LiveLog::Dropped(self.pending_dropped));
            }
        }
        self.stats
    }
}

/// Lines-per-second limiter for live output.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        if self.tokens < 1.0 {
            let now = Instant::now();
            let dt = now.duration_since(self.last).as_secs_f64();
            self.last = now;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_limits_burst() {
        let mut b = TokenBucket::new(0, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
