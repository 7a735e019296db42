//! The host's CPU use for the dispatch threshold (StormTest 6.2), from `/proc/stat`: the
//! share of non-idle time since the previous look. Tests inject their own [`CpuProbe`].

use std::sync::Mutex;

/// Says how busy the host's CPUs are.
pub trait CpuProbe: Send + Sync {
    /// Percent of CPU time in use since the previous call (0 to 100); `None` when it
    /// cannot be told (no `/proc/stat`, or no time passed): runs are then not held back.
    fn busy_percent(&self) -> Option<f64>;
}

/// [`CpuProbe`] on Linux's `/proc/stat`.
pub struct ProcStat {
    /// (idle, total) jiffies at the previous look.
    last: Mutex<Option<(u64, u64)>>,
}

impl ProcStat {
    /// Takes a first sample, so the first [`CpuProbe::busy_percent`] has a span to measure.
    pub fn new() -> Self {
        Self {
            last: Mutex::new(sample()),
        }
    }
}

impl Default for ProcStat {
    fn default() -> Self {
        Self::new()
    }
}

/// (idle + iowait, total) of the `cpu` line of `/proc/stat`.
fn sample() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest times are in user already).
    let idle = v[3].saturating_add(v.get(4).copied().unwrap_or(0));
    let total = v.iter().take(8).fold(0u64, |a, x| a.saturating_add(*x));
    Some((idle, total))
}

impl CpuProbe for ProcStat {
    fn busy_percent(&self) -> Option<f64> {
        let now = sample()?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let prev = last.replace(now)?;
        let total = now.1.checked_sub(prev.1).filter(|t| *t > 0)?;
        let idle = now.0.saturating_sub(prev.0).min(total);
        Some(100.0 * (total - idle) as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line() {
        assert_eq!(
            parse_cpu_line("cpu  10 0 10 70 10 0 0 0 0 0"),
            Some((80, 100))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        let p = ProcStat::new();
        if let Some(v) = p.busy_percent() {
            assert!((0.0..=100.0).contains(&v), "{v}");
        }
    }
}
