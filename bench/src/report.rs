//! What a run prints: each measured phase (throughput, latency quantiles, orderquery calls per
//! notification, CPU per request and peak memory of every process), then the ratios against
//! the baselines and the targets, met or missed.

use std::{fmt::Write as _, time::Duration};

use serde_json::{Value, json};

use crate::{load::LoadResult, stages::Stages};

const MIB: f64 = 1024.0 * 1024.0;

/// One measured phase.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// What was called: "gateway", "order-svc MarkPaid", "ack server".
    pub target: &'static str,
    pub concurrency: usize,
    pub load: LoadResult,
    /// orderquery calls the simulator answered during the phase.
    pub orderquery_calls: u64,
    /// Peak RSS of each process during the phase (bytes), when it could be read.
    pub peak_rss: Vec<(&'static str, Option<u64>)>,
    /// CPU time each process used during the phase.
    pub cpu: Vec<(&'static str, Duration)>,
    /// Rows in tb_order when the phase started, when counted.
    pub table_rows: Option<u64>,
    /// Where the time went, by the services' metrics, when both could be scraped.
    pub stages: Option<Stages>,
}

impl Phase {
    pub fn orderquery_per_request(&self) -> f64 {
        self.orderquery_calls as f64 / (self.load.requests.max(1) as f64)
    }

    /// Wall-clock cost of one request at this concurrency, in microseconds.
    pub fn wall_us_per_request(&self) -> f64 {
        1e6 / self.load.throughput().max(1e-9)
    }

    /// CPU microseconds per request, summed over the named processes.
    pub fn cpu_us_per_request(&self, processes: &[&str]) -> f64 {
        let total: Duration = self
            .cpu
            .iter()
            .filter(|(name, _)| processes.contains(name))
            .map(|(_, cpu)| *cpu)
            .sum();
        total.as_secs_f64() * 1e6 / (self.load.requests.max(1) as f64)
    }

    /// Cores kept busy on average during the phase: CPU time of the named processes over the
    /// phase's wall time.
    pub fn cores_busy(&self, processes: &[&str]) -> f64 {
        self.cpu_us_per_request(processes) * self.load.throughput() / 1e6
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "target": self.target,
            "concurrency": self.concurrency,
            "requests": self.load.requests,
            "failed": self.load.failed,
            "timed_out": self.load.timed_out,
            "elapsed_s": self.load.elapsed.as_secs_f64(),
            "throughput_per_s": self.load.throughput(),
            "latency_ms": {
                "p50": self.load.latency_ms(0.50),
                "p90": self.load.latency_ms(0.90),
                "p99": self.load.latency_ms(0.99),
                "max": self.load.max_ms(),
            },
            "orderquery_calls": self.orderquery_calls,
            "orderquery_per_request": self.orderquery_per_request(),
            "table_rows": self.table_rows,
            "peak_rss_bytes": self.peak_rss.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<serde_json::Map<_, _>>(),
            "cpu_us_per_request": self.cpu.iter().map(|(n, c)| (n.to_string(), json!(c.as_secs_f64() * 1e6 / (self.load.requests.max(1) as f64)))).collect::<serde_json::Map<_, _>>(),
            "errors": self.load.errors,
            "stages": self.stages.as_ref().map(Stages::to_json),
        })
    }
}

/// A target from the issue, as measured.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub wanted: String,
    pub met: bool,
}

impl Target {
    pub fn new(
        name: impl Into<String>,
        measured: impl Into<String>,
        wanted: impl Into<String>,
        met: bool,
    ) -> Self {
        Target {
            name: name.into(),
            measured: measured.into(),
            wanted: wanted.into(),
            met,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "measured": self.measured, "wanted": self.wanted, "met": self.met})
    }
}

pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), |b| format!("{:.1}", b as f64 / MIB))
}

pub fn bytes_to_mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// The phase table.
pub fn phases_table(phases: &[Phase]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>5} {:>7} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "phase", "conc", "reqs", "fail", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "oq/req"
    );
    for phase in phases {
        let load = &phase.load;
        let _ = writeln!(
            out,
            "{:<28} {:>5} {:>7} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.3}{}",
            phase.name,
            phase.concurrency,
            load.requests,
            load.failed,
            load.throughput(),
            load.latency_ms(0.50),
            load.latency_ms(0.90),
            load.latency_ms(0.99),
            load.max_ms(),
            phase.orderquery_per_request(),
            if load.timed_out { "  (cut short)" } else { "" },
        );
    }
    out
}

/// Peak RSS (MiB) and CPU µs per request of every process, per phase.
pub fn resources_table(phases: &[Phase]) -> String {
    let mut out = String::new();
    let Some(first) = phases.first() else {
        return out;
    };
    let names: Vec<&str> = first.peak_rss.iter().map(|(n, _)| *n).collect();
    let _ = write!(out, "{:<28}", "peak RSS MiB | CPU µs/req");
    for name in &names {
        let _ = write!(out, " {:>17}", name);
    }
    let _ = writeln!(out, " {:>9}", "bench");
    for phase in phases {
        let _ = write!(out, "{:<28}", phase.name);
        let per_request = |name: &str| {
            phase
                .cpu
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, cpu)| cpu.as_secs_f64() * 1e6 / (phase.load.requests.max(1) as f64))
        };
        for name in &names {
            let rss = phase
                .peak_rss
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, b)| *b);
            let cpu = per_request(name).map_or_else(|| "?".into(), |c| format!("{c:.0}"));
            let _ = write!(out, " {:>17}", format!("{} | {}", mib(rss), cpu));
        }
        let bench = per_request("bench").map_or_else(|| "?".into(), |c| format!("{c:.0}"));
        let _ = writeln!(out, " {:>9}", bench);
    }
    out
}

pub fn targets_table(targets: &[Target]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<52} {:>22} {:>14}  result",
        "target", "measured", "wanted"
    );
    for target in targets {
        let _ = writeln!(
            out,
            "{:<52} {:>22} {:>14}  {}",
            target.name,
            target.measured,
            target.wanted,
            if target.met { "MET" } else { "MISSED" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn phase(requests: u64, micros: u64, elapsed: Duration) -> Phase {
        let mut latency = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for _ in 0..requests {
            latency.record(micros).unwrap();
        }
        Phase {
            name: "first".into(),
            target: "gateway",
            concurrency: 64,
            load: LoadResult {
                requests,
                failed: 0,
                elapsed,
                latency,
                errors: vec![],
                timed_out: false,
            },
            orderquery_calls: requests,
            peak_rss: vec![("gateway", Some(10 * 1024 * 1024)), ("pay-svc", None)],
            cpu: vec![
                ("gateway", Duration::from_millis(100)),
                ("pay-svc", Duration::from_millis(300)),
            ],
            table_rows: None,
            stages: None,
        }
    }

    #[test]
    fn per_request_figures() {
        let p = phase(1000, 2000, Duration::from_secs(2));
        assert_eq!(p.load.throughput(), 500.0);
        assert_eq!(p.wall_us_per_request(), 2000.0);
        assert_eq!(p.cpu_us_per_request(&["gateway", "pay-svc"]), 400.0);
        assert_eq!(p.orderquery_per_request(), 1.0);
        assert!((p.load.latency_ms(0.99) - 2.0).abs() < 0.01);
    }

    #[test]
    fn tables_show_every_phase_and_process() {
        let phases = [phase(10, 1000, Duration::from_secs(1))];
        let table = phases_table(&phases);
        assert!(table.contains("first"), "{table}");
        let resources = resources_table(&phases);
        assert!(resources.contains("10.0 | 10000"), "{resources}");
        assert!(resources.contains("? | 30000"), "{resources}");
        let targets = targets_table(&[Target::new("x", "1", ">= 2", false)]);
        assert!(targets.contains("MISSED"));
    }
}
