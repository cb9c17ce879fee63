//! What Linux says about a service process: its peak resident memory (`VmHWM`), which can be
//! reset between phases, and the CPU time it has used. Read from `/proc`, so the figures are
//! the kernel's, not an estimate from inside the process.

use std::{fs, time::Duration};

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`. `USER_HZ` is 100 on every
/// Linux architecture this runs on (it is part of the kernel ABI, not the timer frequency).
const USER_HZ: u64 = 100;

/// Peak resident set size in bytes (`VmHWM`), or `None` when the process is gone.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, "VmHWM:").map(|kib| kib * 1024)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, "VmRSS:").map(|kib| kib * 1024)
}

/// Resets the peak to the current RSS, so the next reading is the peak of one phase only.
/// `false` when the kernel refused (then readings are the peak since the process started).
pub fn reset_peak_rss(pid: u32) -> bool {
    // "5" in clear_refs resets VmHWM (Documentation/filesystems/proc.rst).
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// User plus system CPU time the process has used so far, all threads included.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = stat_cpu_ticks(&stat)?;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// `utime + stime` (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_lines_of_status() {
        let status = "Name:\tgateway\nVmPeak:\t  100 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn counts_stat_fields_after_the_command_name() {
        let stat = "4242 (odd) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        assert!(peak_rss(pid).is_some_and(|bytes| bytes > 0));
        assert!(rss(pid).is_some());
        assert!(cpu_time(pid).is_some());
    }
}
