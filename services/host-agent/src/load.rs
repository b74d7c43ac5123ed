//! The machine's CPU and memory use, read from `/proc` (Linux): CPU is the
//! share of busy time between two readings of `/proc/stat`, memory the
//! share of `MemTotal` that is not `MemAvailable` in `/proc/meminfo`. The
//! parsing is pure, so it is tested on sample text; the sampler only reads
//! the files.

use std::path::PathBuf;

/// Cumulative CPU time of all cores, in clock ticks, as `/proc/stat`'s
/// first line counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Reads the aggregate `cpu` line: `user nice system idle iowait irq
/// softirq steal guest guest_nice`. Idle time is `idle + iowait`; `guest`
/// and `guest_nice` are already counted in `user` and `nice`, so they are
/// left out of the total. Kernels before 2.6.33 have fewer columns; the
/// missing ones count as 0.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user, nice, system and idle at least.
    if fields.len() < 4 {
        return None;
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let total: u64 = (0..8).map(field).sum();
    let idle = field(3) + field(4);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Busy share between two readings, 0 to 100. No time passed (or the
/// counters went backwards, which they do not, but a container's view of
/// them might) is 0.
pub fn cpu_percent(earlier: CpuTimes, later: CpuTimes) -> f64 {
    let total = later.total.saturating_sub(earlier.total);
    let busy = later.busy.saturating_sub(earlier.busy);
    if total == 0 {
        return 0.0;
    }
    clamp_percent(busy as f64 / total as f64 * 100.0)
}

/// `(MemTotal - MemAvailable) / MemTotal`, 0 to 100. Kernels before 3.14
/// have no `MemAvailable`; `MemFree` stands in for it there (an
/// overestimate of use, since it ignores reclaimable caches).
pub fn parse_memory_percent(meminfo: &str) -> Option<f64> {
    let value = |name: &str| {
        meminfo.lines().find_map(|line| {
            let (key, rest) = line.split_once(':')?;
            (key.trim() == name)
                .then(|| rest.split_whitespace().next()?.parse::<u64>().ok())
                .flatten()
        })
    };
    let total = value("MemTotal").filter(|total| *total > 0)?;
    let available = value("MemAvailable").or_else(|| value("MemFree"))?;
    let used = total.saturating_sub(available);
    Some(clamp_percent(used as f64 / total as f64 * 100.0))
}

fn clamp_percent(value: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// What a heartbeat reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub cpu_pct: f64,
    pub mem_pct: f64,
}

/// Reads `/proc` at each heartbeat; CPU use is measured since the reading
/// before (the first one is taken when the sampler is made, at startup).
#[derive(Debug)]
pub struct LoadSampler {
    proc_root: PathBuf,
    previous: Option<CpuTimes>,
    /// Set once a failed read has been logged, so a machine without
    /// `/proc` logs it once rather than every heartbeat.
    warned: bool,
}

impl Default for LoadSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadSampler {
    pub fn new() -> Self {
        Self::reading("/proc")
    }

    /// A sampler of another `/proc` (tests, a container's mounted host view).
    pub fn reading(proc_root: impl Into<PathBuf>) -> Self {
        let mut sampler = Self {
            proc_root: proc_root.into(),
            previous: None,
            warned: false,
        };
        sampler.previous = sampler.read_cpu();
        sampler
    }

    /// The use now. What cannot be read is reported as 0 (and logged
    /// once): a heartbeat with a wrong load is better than none, which
    /// would have the instance given up.
    pub fn sample(&mut self) -> Load {
        let now = self.read_cpu();
        let cpu_pct = match (self.previous, now) {
            (Some(earlier), Some(later)) => cpu_percent(earlier, later),
            _ => 0.0,
        };
        if now.is_some() {
            self.previous = now;
        }
        let mem_pct = self
            .read("meminfo")
            .and_then(|text| parse_memory_percent(&text))
            .unwrap_or_else(|| {
                self.warn_once("meminfo");
                0.0
            });
        Load { cpu_pct, mem_pct }
    }

    fn read_cpu(&mut self) -> Option<CpuTimes> {
        let times = self.read("stat").and_then(|text| parse_cpu_times(&text));
        if times.is_none() {
            self.warn_once("stat");
        }
        times
    }

    /// procfs files are generated in memory: reading one does not block
    /// on a disk, so this is done inline on the runtime.
    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(file)).ok()
    }

    fn warn_once(&mut self, file: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                file = %self.proc_root.join(file).display(),
                "cannot read the machine's load; reporting 0"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_BEFORE: &str = "\
cpu  4705 356 584 3699176 23 23 0 0 0 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]
ctxt 1990473
";
    const STAT_AFTER: &str = "\
cpu  4805 356 684 3699276 123 23 0 0 50 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
";

    #[test]
    fn reads_the_aggregate_cpu_line() {
        let times = parse_cpu_times(STAT_BEFORE).unwrap();
        // user + nice + system + idle + iowait + irq + softirq + steal
        assert_eq!(times.total, 4705 + 356 + 584 + 3699176 + 23 + 23);
        assert_eq!(times.busy, 4705 + 356 + 584 + 23);
    }

    #[test]
    fn cpu_use_is_the_busy_share_between_two_readings() {
        let before = parse_cpu_times(STAT_BEFORE).unwrap();
        let after = parse_cpu_times(STAT_AFTER).unwrap();
        // +100 user, +100 system, +100 idle, +100 iowait; guest not counted.
        assert_eq!(after.total - before.total, 400);
        assert!((cpu_percent(before, after) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(before, before), 0.0);
        assert_eq!(cpu_percent(after, before), 0.0);
    }

    #[test]
    fn old_kernels_with_fewer_columns_still_count() {
        let times = parse_cpu_times("cpu 10 0 10 80\n").unwrap();
        assert_eq!(
            times,
            CpuTimes {
                busy: 20,
                total: 100
            }
        );
    }

    #[test]
    fn garbage_is_no_reading() {
        assert_eq!(parse_cpu_times(""), None);
        assert_eq!(parse_cpu_times("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_cpu_times("cpu 1 2 x 4\n"), None);
        assert_eq!(parse_cpu_times("cpu 1 2\n"), None);
    }

    const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:   12000000 kB
Buffers:          500000 kB
Cached:          6000000 kB
";

    #[test]
    fn memory_use_is_what_is_not_available() {
        let pct = parse_memory_percent(MEMINFO).unwrap();
        assert!((pct - 25.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn without_mem_available_mem_free_stands_in() {
        let pct = parse_memory_percent("MemTotal: 1000 kB\nMemFree: 100 kB\n").unwrap();
        assert!((pct - 90.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn memory_without_a_total_is_no_reading() {
        assert_eq!(parse_memory_percent("MemFree: 100 kB\n"), None);
        assert_eq!(
            parse_memory_percent("MemTotal: 0 kB\nMemFree: 0 kB\n"),
            None
        );
        assert_eq!(parse_memory_percent("MemTotal: 10 kB\n"), None);
    }

    #[test]
    fn the_sampler_reads_a_proc_directory() {
        let dir = std::env::temp_dir().join(format!("host-agent-proc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), STAT_BEFORE).unwrap();
        std::fs::write(dir.join("meminfo"), MEMINFO).unwrap();
        let mut sampler = LoadSampler::reading(&dir);
        std::fs::write(dir.join("stat"), STAT_AFTER).unwrap();
        let load = sampler.sample();
        assert!((load.cpu_pct - 50.0).abs() < 1e-9, "{load:?}");
        assert!((load.mem_pct - 25.0).abs() < 1e-9, "{load:?}");
        // Nothing changed since: no CPU time passed.
        assert_eq!(sampler.sample().cpu_pct, 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_machine_without_proc_reports_zero() {
        let mut sampler = LoadSampler::reading("/nonexistent/proc");
        assert_eq!(
            sampler.sample(),
            Load {
                cpu_pct: 0.0,
                mem_pct: 0.0
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_a_load() {
        let mut sampler = LoadSampler::new();
        let load = sampler.sample();
        assert!((0.0..=100.0).contains(&load.cpu_pct), "{load:?}");
        assert!(load.mem_pct > 0.0 && load.mem_pct <= 100.0, "{load:?}");
    }
}
