//! One benchmark run: start the stack, measure the floors and the scenarios on it, check the
//! database, and print the figures with their ratios and the targets.
//!
//! Phases on the main stack, in order: warm-up (unmeasured) → HTTP, GetOrder and bare gRPC
//! floors (which price the parts of a notification) → MarkPaid floor → first notifications →
//! MarkPaid floor again (these two once per `--rounds`) → duplicates → WeChat slow. The MarkPaid floor brackets every round of first notifications so that a machine whose
//! speed drifts during the run (a shared VM's does) moves both sides of the ratio alike, and
//! the targets take the median over rounds. Growth gets a fresh stack and database, so its
//! small point really has only `--growth-small` orders in the table.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use paynotify::{
    proto::order::v1::{GetOrderRequest, MarkPaidOutcome, MarkPaidRequest},
    wxpay::sign::SignType,
};
use rand::{SeedableRng, seq::SliceRandom};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use wxpay_sim::Faults;

use crate::{
    check::{self, Expected},
    cli::{Options, Scenario},
    load::{self, Caller, LoadResult, NotifyCaller},
    orders::{self, Batch, TransactionIds},
    procfs, profile,
    report::{self, Phase, Target},
    seed,
    stack::{OrderClient, Settings, Stack},
    stages,
};

/// The targets.
const MIN_E2E_VS_MARK_PAID: f64 = 0.5;
const MARK_PAID_FLOOR: &str = "floor: MarkPaid gRPC";
const MARK_PAID_FLOOR_AFTER: &str = "floor: MarkPaid gRPC (after)";
const HTTP_FLOOR: &str = "floor: bare HTTP ack";
const GRPC_FLOOR: &str = "floor: bare gRPC (health Check)";
/// The HTTP, GetOrder and health floors make this many times `--orders` requests (the same
/// bodies and orders again): at 30,000–90,000 a second, `--orders` alone would last under a
/// tenth of a second, too short for CPU times read in 10 ms ticks and for the workers' own
/// connects, made inside the timed phase, to vanish in it.
const CHEAP_FLOOR_REPEATS: usize = 10;
const GET_ORDER_FLOOR: &str = "floor: GetOrder gRPC";
const FIRST: &str = "e2e: first notifications";

/// The first notifications of round `round` (1-based); round 1 keeps the plain name.
fn first_name(round: u32) -> String {
    match round {
        1 => FIRST.to_owned(),
        n => format!("{FIRST} (round {n})"),
    }
}

/// The MarkPaid floor measured just after round `round`'s first notifications.
fn floor_after_name(round: u32) -> String {
    match round {
        1 => MARK_PAID_FLOOR_AFTER.to_owned(),
        n => format!("{MARK_PAID_FLOOR} (after round {n})"),
    }
}

/// The MarkPaid floor measured just before round `round`'s first notifications.
fn floor_before_name(round: u32) -> String {
    match round {
        1 => MARK_PAID_FLOOR.to_owned(),
        n => floor_after_name(n - 1),
    }
}

/// The exchanges of one first notification besides order-svc's two calls (whose floors
/// include theirs): bench → gateway and pay-svc → WeChat over HTTP/1.1, gateway → pay-svc
/// over gRPC.
const OUTER_HTTP_EXCHANGES: f64 = 2.0;
const OUTER_GRPC_EXCHANGES: f64 = 1.0;
/// Every process of a stack whose CPU counts, the load tool included.
const ALL_PROCESSES: [&str; 6] = [
    "gateway",
    "pay-svc",
    "order-svc",
    "wxpay-sim",
    "ack-server",
    "bench",
];
const MAX_FIRST_P99_MS: f64 = 50.0;
const MIN_DUPLICATES_VS_FIRST: f64 = 3.0;
const MIN_SLOW_THROUGHPUT: f64 = 800.0;
const MAX_GROWTH_COST_RATIO: f64 = 1.3;
const MAX_SERVICE_RSS_MIB: f64 = 64.0;
/// The services whose memory the target is about (the simulator stands in for WeChat).
const SERVICES: [&str; 3] = ["gateway", "pay-svc", "order-svc"];

/// Calls MarkPaid directly, as pay-svc would, over a clone of one gRPC channel.
struct MarkPaidCaller {
    client: OrderClient,
    requests: Arc<Vec<MarkPaidRequest>>,
}

impl Caller for MarkPaidCaller {
    async fn call(&mut self, index: usize) -> Result<(), String> {
        let request = self
            .requests
            .get(index)
            .cloned()
            .ok_or_else(|| format!("request {index} is not in the plan"))?;
        let response = self
            .client
            .mark_paid(request)
            .await
            .map_err(|status| format!("MarkPaid: {status}"))?
            .into_inner();
        match response.outcome() {
            MarkPaidOutcome::MarkedPaid => Ok(()),
            other => Err(format!("MarkPaid answered {other:?}: {}", response.detail)),
        }
    }
}

/// Reads the orders about to be notified (still unpaid) with GetOrder, as pay-svc does before
/// every orderquery.
struct GetOrderCaller {
    client: OrderClient,
    order_ids: Arc<Vec<String>>,
}

impl Caller for GetOrderCaller {
    async fn call(&mut self, index: usize) -> Result<(), String> {
        let id = self
            .order_ids
            .get(index % self.order_ids.len().max(1))
            .cloned()
            .ok_or_else(|| "no orders to read".to_owned())?;
        self.client
            .get_order(GetOrderRequest { id })
            .await
            .map_err(|status| format!("GetOrder: {status}"))?;
        Ok(())
    }
}

/// Calls order-svc's standard health Check, which does no work: what one gRPC exchange
/// through order-svc's server stack (tracing span, metrics layer) costs by itself.
struct HealthCaller {
    client: HealthClient<Channel>,
}

impl Caller for HealthCaller {
    async fn call(&mut self, _index: usize) -> Result<(), String> {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let response = self
            .client
            .check(request)
            .await
            .map_err(|status| format!("health Check: {status}"))?
            .into_inner();
        match response.status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("health Check answered {other:?}")),
        }
    }
}

/// The work directory, removed when dropped unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Everything a run measured and found.
#[derive(Default)]
struct Findings {
    phases: Vec<Phase>,
    targets: Vec<Target>,
    /// Correctness problems: failed requests, a dead service, a database check.
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    fn record(&mut self, phase: Phase) {
        if phase.load.failed > 0 {
            self.failures.push(format!(
                "{}: {} of {} requests failed, e.g. {:?}",
                phase.name, phase.load.failed, phase.load.requests, phase.load.errors
            ));
        }
        if phase.load.timed_out {
            self.failures
                .push(format!("{}: cut short by the phase time limit", phase.name));
        }
        println!(
            "{}",
            report::phases_table(std::slice::from_ref(&phase)).trim_end()
        );
        self.phases.push(phase);
    }
}

/// Runs the selected scenarios; `Ok(false)` when something failed (or, with `--strict`, a
/// target was missed).
pub async fn run(options: Options) -> anyhow::Result<bool> {
    options.validate()?;
    let work = WorkDir {
        path: match &options.work_dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir().join(format!(
                "paynotify-bench-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )),
        },
        keep: options.keep || options.work_dir.is_some(),
    };
    std::fs::create_dir_all(&work.path)
        .with_context(|| format!("creating {}", work.path.display()))?;
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => crate::stack::default_bin_dir()?,
    };
    let settings = |db_name: &str| Settings {
        bin_dir: bin_dir.clone(),
        work_dir: work.path.clone(),
        database_url: options
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", work.path.join(db_name).display())),
        service_log: options.service_log.clone(),
        db_max_connections: options.db_max_connections,
    };

    println!("{}", machine());
    println!(
        "work directory {} ({}), database {}",
        work.path.display(),
        if work.keep {
            "kept"
        } else {
            "removed afterwards"
        },
        if options.database_url.is_some() {
            "from DATABASE_URL"
        } else {
            "SQLite in the work directory"
        }
    );

    let mut findings = Findings::default();
    let main = options.runs(Scenario::First) || options.runs(Scenario::Slow);
    if main {
        run_main(&options, &settings("orders.db"), &mut findings).await?;
    }
    if options.runs(Scenario::Growth) {
        run_growth(&options, &settings("growth.db"), &mut findings).await?;
    }

    println!();
    println!("== all phases");
    print!("{}", report::phases_table(&findings.phases));
    println!();
    print!("{}", report::resources_table(&findings.phases));
    println!();
    println!("== targets (ratios against baselines measured in this run)");
    print!("{}", report::targets_table(&findings.targets));
    for note in &findings.notes {
        println!("note: {note}");
    }
    if findings.failures.is_empty() {
        println!("correctness: every request acknowledged, every order paid exactly once");
    } else {
        println!("FAILURES:");
        for failure in &findings.failures {
            println!("  - {failure}");
        }
    }

    if let Some(path) = &options.json {
        let value = json!({
            "machine": machine(),
            "options": format!("{options:?}"),
            "phases": findings.phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
            "targets": findings.targets.iter().map(Target::to_json).collect::<Vec<_>>(),
            "failures": findings.failures,
            "notes": findings.notes,
        });
        std::fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let targets_met = findings.targets.iter().all(|t| t.met);
    Ok(findings.failures.is_empty() && (targets_met || !options.strict))
}

/// `options.warmup` unmeasured notifications through the whole pipeline of `stack`; their
/// orders join `expected` for the database check.
async fn warm_up(
    stack: &Stack,
    options: &Options,
    label: &str,
    findings: &mut Findings,
    expected: &mut Vec<Expected>,
) -> anyhow::Result<()> {
    if options.warmup == 0 {
        return Ok(());
    }
    let c = options.concurrency;
    let sign_type = SignType::from(options.sign_type);
    let warmup = orders::paid_batch(stack, options.warmup, c, sign_type).await?;
    let plan = Arc::new((0..warmup.orders.len()).collect::<Vec<_>>());
    let result = post(stack, &warmup, plan, c.min(16), options).await;
    if result.failed > 0 {
        findings.failures.push(format!(
            "{label} warm-up: {} of {} notifications failed, e.g. {:?}",
            result.failed, result.requests, result.errors
        ));
    }
    expect_paid(expected, &warmup);
    Ok(())
}

/// Floors, first notifications, duplicates and WeChat slow, on one stack.
async fn run_main(
    options: &Options,
    settings: &Settings,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    println!("\n== main stack: starting");
    let mut stack = Stack::start(settings).await?;
    let db = seed::connect(&settings.database_url).await?;
    let sign_type = SignType::from(options.sign_type);
    let ids = TransactionIds::new();
    let mut expected = Vec::new();
    let c = options.concurrency;

    warm_up(&stack, options, "main", findings, &mut expected).await?;

    if options.runs(Scenario::First) {
        // The floors that price the parts of a notification come first, so that only the
        // first notifications sit between the MarkPaid floors that bracket them.
        // The notifications of the first round, prepared before the HTTP floor so that both
        // post the same bodies.
        println!("preparing {} orders paid in the simulator", options.orders);
        let batch = orders::paid_batch(&stack, options.orders, c, sign_type).await?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let plan = Arc::new(load::plan(batch.orders.len(), options.dup_ratio, &mut rng));

        // 1. The HTTP floor: the same bodies to a server that only acks.
        let bodies = batch.bodies.clone();
        let floor_plan = Arc::new(
            (0..batch.orders.len())
                .cycle()
                .take(CHEAP_FLOOR_REPEATS * batch.orders.len())
                .collect::<Vec<_>>(),
        );
        let timeout = Duration::from_millis(options.request_timeout_ms);
        let ack_addr = stack.ack_server.addr;
        let phase = measure(
            &stack,
            HTTP_FLOOR,
            "ack server",
            c,
            floor_plan.len(),
            options,
            None,
            || {
                NotifyCaller::new(
                    ack_addr,
                    "/wxpay/notify",
                    bodies.clone(),
                    floor_plan.clone(),
                    timeout,
                )
            },
        )
        .await?;
        findings.record(phase);

        // 2. The read pay-svc makes before every orderquery: the same orders, still unpaid.
        let order_ids = Arc::new(batch.orders.iter().map(|o| o.id.clone()).collect());
        let phase = measure(
            &stack,
            GET_ORDER_FLOOR,
            "order-svc GetOrder",
            c,
            CHEAP_FLOOR_REPEATS * options.orders,
            options,
            None,
            || GetOrderCaller {
                client: stack.order_client.clone(),
                order_ids: Arc::clone(&order_ids),
            },
        )
        .await?;
        findings.record(phase);

        // 3. One gRPC exchange that does no work, through order-svc's server stack.
        let health = stack.order_health.clone();
        let phase = measure(
            &stack,
            GRPC_FLOOR,
            "order-svc health",
            c,
            CHEAP_FLOOR_REPEATS * options.orders,
            options,
            None,
            || HealthCaller {
                client: health.clone(),
            },
        )
        .await?;
        findings.record(phase);

        // 4. The database floor: MarkPaid straight into order-svc.
        let floor = mark_paid_floor(&stack, options, &ids, &mut expected, MARK_PAID_FLOOR).await?;
        findings.record(floor);
        stack.check_alive()?;

        // 5. End to end: first notifications (and interleaved duplicates if asked), then 4
        // again, on orders of the same age. Later rounds repeat both with fresh orders.
        for round in 1..=options.rounds {
            let later;
            let (batch, plan) = if round == 1 {
                (&batch, Arc::clone(&plan))
            } else {
                println!(
                    "round {round}: preparing {} orders paid in the simulator",
                    options.orders
                );
                later = orders::paid_batch(&stack, options.orders, c, sign_type).await?;
                let plan = load::plan(later.orders.len(), options.dup_ratio, &mut rng);
                (&later, Arc::new(plan))
            };
            let first =
                measure_notifications(&stack, &first_name(round), c, batch, plan, options, None)
                    .await?;
            findings.record(first);
            expect_paid(&mut expected, batch);
            stack.check_alive()?;

            let floor_name = floor_after_name(round);
            let floor = mark_paid_floor(&stack, options, &ids, &mut expected, &floor_name).await?;
            findings.record(floor);
            stack.check_alive()?;
        }

        // 6. Duplicates of orders now paid: the same bodies again, in another order.
        if options.runs(Scenario::Duplicates) {
            let mut again: Vec<usize> = (0..batch.orders.len()).collect();
            again.shuffle(&mut rng);
            let phase = measure_notifications(
                &stack,
                "e2e: duplicates (paid)",
                c,
                &batch,
                Arc::new(again),
                options,
                None,
            )
            .await?;
            findings.record(phase);
            stack.check_alive()?;
        }
        first_targets(findings, options);
    }

    if options.runs(Scenario::Slow) {
        println!(
            "preparing {} orders for the slow-WeChat phase",
            options.orders
        );
        let batch = orders::paid_batch(&stack, options.orders, c, sign_type).await?;
        let faults = Faults {
            orderquery_latency_ms: options.slow_latency_ms,
            ..Faults::default()
        };
        stack
            .sim_client
            .set_faults(&faults)
            .await
            .context("setting the simulator's orderquery latency")?;
        let plan = Arc::new((0..batch.orders.len()).collect::<Vec<_>>());
        let name = format!("e2e: WeChat +{} ms", options.slow_latency_ms);
        let phase = measure_notifications(
            &stack,
            &name,
            options.slow_concurrency,
            &batch,
            plan,
            options,
            None,
        )
        .await;
        stack.sim_client.set_faults(&Faults::default()).await?;
        let phase = phase?;
        let throughput = phase.load.throughput();
        // With every request waiting `latency` on WeChat, c requests in flight can finish at
        // most c / latency per second: the ceiling nothing can beat.
        let ceiling = options.slow_concurrency as f64 / (options.slow_latency_ms as f64 / 1000.0);
        findings.targets.push(Target::new(
            format!(
                "slow WeChat, c={}: notifications/s",
                options.slow_concurrency
            ),
            format!(
                "{throughput:.0}/s ({:.0}% of c/latency)",
                100.0 * throughput / ceiling
            ),
            format!(">= {MIN_SLOW_THROUGHPUT:.0}/s"),
            throughput >= MIN_SLOW_THROUGHPUT,
        ));
        findings.record(phase);
        expect_paid(&mut expected, &batch);
        stack.check_alive()?;
    }

    rss_target(findings, "main stack");
    check_database(&db, &expected, findings).await?;
    db.close().await?;
    Ok(())
}

/// The database floor: `--orders` fresh orders paid by MarkPaid straight into order-svc.
async fn mark_paid_floor(
    stack: &Stack,
    options: &Options,
    ids: &TransactionIds,
    expected: &mut Vec<Expected>,
    name: &str,
) -> anyhow::Result<Phase> {
    let c = options.concurrency;
    println!("preparing {} orders for the MarkPaid floor", options.orders);
    let requests =
        Arc::new(orders::mark_paid_requests(&stack.order_client, options.orders, c, ids).await?);
    expected.extend(requests.iter().map(|r| Expected {
        order_id: r.order_id.clone(),
        transaction_id: r.transaction_id.clone(),
    }));
    measure(
        stack,
        name,
        "order-svc MarkPaid",
        c,
        requests.len(),
        options,
        None,
        || MarkPaidCaller {
            client: stack.order_client.clone(),
            requests: requests.clone(),
        },
    )
    .await
}

/// Cost per notification with `growth_small` and with `growth_large` orders in the table.
async fn run_growth(
    options: &Options,
    settings: &Settings,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    println!("\n== growth stack: starting (fresh database)");
    let mut stack = Stack::start(settings).await?;
    let db = seed::connect(&settings.database_url).await?;
    let sign_type = SignType::from(options.sign_type);
    let ids = TransactionIds::new();
    let mut expected = Vec::new();
    let c = options.concurrency;

    warm_up(&stack, options, "growth", findings, &mut expected).await?;

    let mut points = Vec::new();
    for (label, rows) in [
        ("small", options.growth_small),
        ("large", options.growth_large),
    ] {
        // The batch's own orders are part of the table when the phase starts.
        let fill = rows.saturating_sub(options.orders as u64);
        let started = Instant::now();
        let added = seed::fill_to(&db, fill, &ids).await?;
        if added > 0 {
            println!(
                "seeded {added} orders in {:.1} s ({:.0} rows/s)",
                started.elapsed().as_secs_f64(),
                added as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
        let batch = orders::paid_batch(&stack, options.orders, c, sign_type).await?;
        let table_rows = seed::count_orders(&db).await?;
        let plan = Arc::new((0..batch.orders.len()).collect::<Vec<_>>());
        let name = format!("growth: {} orders", human(table_rows));
        let phase =
            measure_notifications(&stack, &name, c, &batch, plan, options, Some(table_rows))
                .await?;
        points.push((label, phase.clone()));
        findings.record(phase);
        expect_paid(&mut expected, &batch);
        stack.check_alive()?;
    }

    if let [(_, small), (_, large)] = points.as_slice()
        && let Some(problem) = growth_unmeasured(options, small, large)
    {
        findings.notes.push(format!("growth not judged: {problem}"));
    } else if let [(_, small), (_, large)] = points.as_slice() {
        let wall = large.wall_us_per_request() / small.wall_us_per_request();
        let cpu_small = small.cpu_us_per_request(&SERVICES);
        let cpu_large = large.cpu_us_per_request(&SERVICES);
        let cpu = cpu_large / cpu_small.max(1e-9);
        findings.targets.push(Target::new(
            format!(
                "growth: wall cost/notification {} vs {}",
                human(large.table_rows.unwrap_or(0)),
                human(small.table_rows.unwrap_or(0))
            ),
            format!(
                "{wall:.2}x ({:.0} vs {:.0} µs)",
                large.wall_us_per_request(),
                small.wall_us_per_request()
            ),
            format!("<= {MAX_GROWTH_COST_RATIO}x"),
            wall <= MAX_GROWTH_COST_RATIO,
        ));
        findings.targets.push(Target::new(
            "growth: service CPU/notification, large vs small",
            format!("{cpu:.2}x ({cpu_large:.0} vs {cpu_small:.0} µs)"),
            format!("<= {MAX_GROWTH_COST_RATIO}x"),
            cpu <= MAX_GROWTH_COST_RATIO,
        ));
    }
    rss_target(findings, "growth stack");
    check_database(&db, &expected, findings).await?;
    db.close().await?;
    Ok(())
}

/// One round of first notifications with the MarkPaid floors measured on either side of it.
struct Round<'a> {
    first: &'a Phase,
    floor_before: f64,
    floor_after: f64,
}

impl Round<'_> {
    fn floor(&self) -> f64 {
        (self.floor_before + self.floor_after) / 2.0
    }

    fn ratio(&self) -> f64 {
        self.first.load.throughput() / self.floor()
    }

    fn drifted(&self) -> bool {
        (self.floor_before - self.floor_after).abs() > 0.15 * self.floor()
    }
}

/// The rounds the run measured, in order, each with both of its floors.
fn rounds(findings: &Findings) -> Vec<Round<'_>> {
    (1..)
        .map_while(|round| {
            Some(Round {
                first: findings.phase(&first_name(round))?,
                floor_before: findings.phase(&floor_before_name(round))?.load.throughput(),
                floor_after: findings.phase(&floor_after_name(round))?.load.throughput(),
            })
        })
        .collect()
}

/// The middle value (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// "0.45 (2250 vs 5000/s)" for one round; the median and every round's value for several.
fn over_rounds(values: &[f64], one: String, unit: &str, digits: usize) -> String {
    if values.len() == 1 {
        return one;
    }
    let each: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
    format!(
        "{:.digits$}{unit} (median of {} rounds: {})",
        median(values.to_vec()),
        values.len(),
        each.join(", ")
    )
}

/// The first scenario's targets, from its rounds and their floors: the median over rounds.
fn first_targets(findings: &mut Findings, options: &Options) {
    let rounds = rounds(findings);
    let (Some(round_one), Some(http)) = (rounds.first(), findings.phase(HTTP_FLOOR)) else {
        return;
    };
    // The first notifications' throughput: the median over rounds (round 1's alone for one).
    let e2e = median(rounds.iter().map(|r| r.first.load.throughput()).collect());
    let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
    let p99s: Vec<f64> = rounds
        .iter()
        .map(|r| r.first.load.latency_ms(0.99))
        .collect();
    let (ratio, p99) = (median(ratios.clone()), median(p99s.clone()));
    let vs_http = e2e / http.load.throughput();
    let c = options.concurrency;
    // With resent copies mixed in, the phase's requests are posts, not payments, and a copy
    // of a paid order costs a fifth of a payment: its rate and p99 would flatter the pipeline.
    let judged = options.dup_ratio <= 0.0;
    let mut targets = vec![
        Target::new(
            format!("first, c={c}: e2e / MarkPaid floor throughput"),
            over_rounds(
                &ratios,
                format!("{ratio:.2} ({e2e:.0} vs {:.0}/s)", round_one.floor()),
                "",
                2,
            ),
            format!(">= {MIN_E2E_VS_MARK_PAID}"),
            ratio >= MIN_E2E_VS_MARK_PAID,
        ),
        Target::new(
            format!("first, c={c}: p99 latency"),
            over_rounds(&p99s, format!("{p99:.1} ms"), " ms", 1),
            format!("< {MAX_FIRST_P99_MS} ms"),
            p99 < MAX_FIRST_P99_MS,
        ),
    ];
    if !judged {
        targets.clear();
    }
    let first_oq = rounds.iter().map(|r| r.first.orderquery_calls).sum::<u64>() as f64
        / rounds
            .iter()
            .map(|r| r.first.load.requests.max(1) as f64)
            .sum::<f64>();
    let mut notes = vec![format!(
        "first, c={c}: e2e / bare HTTP floor throughput = {vs_http:.3} ({e2e:.0} vs {:.0}/s); \
         orderquery per notification {first_oq:.3}",
        http.load.throughput()
    )];
    if !judged {
        notes.push(format!(
            "first, c={c}: --dup-ratio {} mixes resent copies into the first notifications, so \
             their rate counts posts, not payments: the e2e / MarkPaid, p99 and duplicates / first \
             targets are not judged (run without --dup-ratio for them); the ratio would read \
             {ratio:.2}",
            options.dup_ratio
        ));
    }
    if rounds.len() > 1 {
        notes.push(format!(
            "first notifications: {e2e:.0}/s is the median over {} rounds, in the HTTP floor \
             and duplicates ratios too",
            rounds.len()
        ));
    }
    for (n, round) in rounds.iter().enumerate() {
        notes.push(format!(
            "round {}: first notifications {:.0}/s, MarkPaid floor {:.0}/s before and {:.0}/s \
             after; ratio {:.2} against their mean",
            n + 1,
            round.first.load.throughput(),
            round.floor_before,
            round.floor_after,
            round.ratio()
        ));
        if round.drifted() {
            notes.push(format!(
                "round {}: the two MarkPaid floors differ by more than 15%: the machine's speed \
                 drifted during the round",
                n + 1
            ));
        }
    }
    notes.extend(cpu_breakdown(findings).unwrap_or_default());
    notes.extend(stage_notes(findings));
    if let Some(dups) = findings.phase("e2e: duplicates (paid)") {
        let ratio = dups.load.throughput() / e2e;
        // Against posts with copies in them the ratio would be too low: judged only without.
        if judged {
            targets.push(Target::new(
                "duplicates of paid orders / first throughput",
                format!("{ratio:.2}x ({:.0} vs {e2e:.0}/s)", dups.load.throughput()),
                format!(">= {MIN_DUPLICATES_VS_FIRST}x"),
                ratio >= MIN_DUPLICATES_VS_FIRST,
            ));
        }
        targets.push(Target::new(
            "duplicates of paid orders: orderquery calls",
            dups.orderquery_calls.to_string(),
            "0",
            dups.orderquery_calls == 0,
        ));
        notes.push(format!(
            "duplicates / bare HTTP floor throughput = {:.3}",
            dups.load.throughput() / http.load.throughput()
        ));
    }
    findings.targets.extend(targets);
    findings.notes.extend(notes);
}

/// Why the growth points do not measure growth, if they do not: the table already held so many
/// rows at the small point (a reused `--work-dir`, or a `DATABASE_URL` with rows of its own;
/// seeding only ever adds rows) that the large point is not even ten times it (or half the
/// spread asked for, if that is less).
fn growth_unmeasured(options: &Options, small: &Phase, large: &Phase) -> Option<String> {
    let (small_rows, large_rows) = (small.table_rows?, large.table_rows?);
    let asked = options.growth_large as f64 / options.growth_small.max(1) as f64;
    let wanted = (asked / 2.0).min(10.0);
    let spread = large_rows as f64 / small_rows.max(1) as f64;
    (spread < wanted).then(|| {
        format!(
            "the table held {} orders at the small point and {} at the large one, {spread:.1}x \
             apart (wanted at least {wanted:.1}x): start from a fresh database (no --work-dir \
             reuse, a DATABASE_URL without rows of its own)",
            human(small_rows),
            human(large_rows)
        )
    })
}

/// Where the first notifications' time went, and how the MarkPaid writer grouped payments
/// in them and in the floors, from the services' metrics (docs/PERFORMANCE.md, "Where a first
/// notification's time goes").
fn stage_notes(findings: &Findings) -> Vec<String> {
    findings
        .phases
        .iter()
        .filter_map(|phase| {
            let stages = phase.stages.as_ref()?;
            if phase.name.starts_with(FIRST) {
                // Little's law: the mean time in flight of `concurrency` requests at this rate.
                let in_flight_ms = phase.concurrency as f64 / phase.load.throughput() * 1000.0;
                stages.notification_note(&phase.name, in_flight_ms)
            } else if phase.name.starts_with(MARK_PAID_FLOOR) {
                stages.floor_note(&phase.name)
            } else {
                None
            }
        })
        .collect()
}

/// Where a first notification's CPU goes, priced by the floors of the same run (CPU per
/// request of every process, the load tool included, averaged over the rounds and over every
/// MarkPaid floor around them): order-svc's two calls as made directly, and the rest (the
/// gateway, pay-svc, WeChat and their exchanges).
///
/// First notifications are CPU-bound, the MarkPaid floor is not (its single writer bounds it
/// and it leaves part of the CPU idle), so e2e / MarkPaid throughput is about the CPU ratio
/// (MarkPaid's CPU over a notification's) times the busy ratio (cores kept busy by first
/// notifications over those kept busy by the floor). The last note bounds the ratio from
/// above: order-svc's two calls as they are, and the gateway, pay-svc and WeChat doing nothing
/// but their three exchanges (two HTTP/1.1, one gRPC), each priced at its floor.
fn cpu_breakdown(findings: &Findings) -> Option<Vec<String>> {
    let cpu = |name: &str| {
        findings
            .phase(name)
            .map(|phase| phase.cpu_us_per_request(&ALL_PROCESSES))
    };
    let busy = |name: &str| {
        findings
            .phase(name)
            .map(|phase| phase.cores_busy(&ALL_PROCESSES))
    };
    // Every round's first notifications, and every MarkPaid floor around them.
    let rounds = rounds(findings).len() as u32;
    let firsts: Vec<String> = (1..=rounds).map(first_name).collect();
    let floors: Vec<String> = (0..=rounds).map(|r| floor_before_name(r + 1)).collect();
    let mean = |names: &[String], of: &dyn Fn(&str) -> Option<f64>| -> Option<f64> {
        let values = names.iter().map(|n| of(n)).collect::<Option<Vec<f64>>>()?;
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let pipeline = mean(&firsts, &cpu)?;
    let mark_paid = mean(&floors, &cpu)?;
    let busy_ratio = mean(&firsts, &busy)? / mean(&floors, &busy)?.max(1e-9);
    let get_order = cpu(GET_ORDER_FLOOR)?;
    let (http, grpc) = (cpu(HTTP_FLOOR)?, cpu(GRPC_FLOOR)?);
    let rest = pipeline - mark_paid - get_order;
    let cpu_ratio = mark_paid / pipeline.max(1e-9);
    let leanest = mark_paid + get_order + OUTER_HTTP_EXCHANGES * http + OUTER_GRPC_EXCHANGES * grpc;
    let leanest_ratio = mark_paid / leanest.max(1e-9);
    Some(vec![
        format!(
            "CPU per request, all processes: a first notification {pipeline:.0} µs = MarkPaid \
             {mark_paid:.0} + GetOrder {get_order:.0} (as called directly) + {rest:.0} for \
             the gateway, pay-svc, WeChat and their exchanges"
        ),
        format!(
            "cores busy (CPU time / wall time, all processes): first notifications {:.2}, \
             MarkPaid floor {:.2}; e2e / MarkPaid throughput ≈ CPU ratio {cpu_ratio:.2} x busy \
             ratio {busy_ratio:.2} = {:.2}",
            mean(&firsts, &busy)?,
            mean(&floors, &busy)?,
            cpu_ratio * busy_ratio
        ),
        format!(
            "if the gateway, pay-svc and WeChat did nothing but their exchanges \
             ({OUTER_HTTP_EXCHANGES} HTTP x {http:.0} + {OUTER_GRPC_EXCHANGES} gRPC x {grpc:.0} \
             µs), a notification would cost {leanest:.0} µs and e2e / MarkPaid could reach \
             about {leanest_ratio:.2} x {busy_ratio:.2} = {:.2}",
            leanest_ratio * busy_ratio
        ),
    ])
}

/// The highest peak RSS of each service over the stack's load phases.
fn rss_target(findings: &mut Findings, stack: &str) {
    let mut worst: Option<(&str, u64)> = None;
    let mut sim_peak = 0;
    for phase in findings.phases.iter().filter(|p| p.target == "gateway") {
        for (name, bytes) in &phase.peak_rss {
            let Some(bytes) = *bytes else { continue };
            if SERVICES.contains(name) {
                if worst.is_none_or(|(_, w)| bytes > w) {
                    worst = Some((name, bytes));
                }
            } else if *name == "wxpay-sim" {
                sim_peak = sim_peak.max(bytes);
            }
        }
    }
    if findings
        .targets
        .iter()
        .any(|t| t.name.starts_with("peak RSS"))
    {
        // One line for both stacks: keep the worse.
        if let Some((name, bytes)) = worst
            && let Some(t) = findings
                .targets
                .iter_mut()
                .find(|t| t.name.starts_with("peak RSS"))
        {
            let mib = report::bytes_to_mib(bytes);
            if mib >= MAX_SERVICE_RSS_MIB {
                t.met = false;
            }
            t.measured = format!("{} / {name} {mib:.1} MiB ({stack})", t.measured);
        }
        return;
    }
    if let Some((name, bytes)) = worst {
        let mib = report::bytes_to_mib(bytes);
        findings.targets.push(Target::new(
            "peak RSS of each service under load (max)",
            format!("{name} {mib:.1} MiB ({stack})"),
            format!("< {MAX_SERVICE_RSS_MIB} MiB"),
            mib < MAX_SERVICE_RSS_MIB,
        ));
    }
    if sim_peak > 0 {
        findings.notes.push(format!(
            "wxpay-sim peak RSS {:.1} MiB ({stack}): the simulator keeps every order it was told \
             about in memory; it plays WeChat and is not one of the services",
            report::bytes_to_mib(sim_peak)
        ));
    }
}

async fn check_database(
    db: &DatabaseConnection,
    expected: &[Expected],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let report = check::paid_exactly_once(db, expected).await?;
    println!(
        "database check: {} orders, {} problem(s)",
        report.checked, report.problem_count
    );
    if !report.ok() {
        findings.failures.push(format!(
            "database check: {} problem(s) in {} orders: {:#?}",
            report.problem_count, report.checked, report.problems
        ));
    }
    Ok(())
}

fn expect_paid(expected: &mut Vec<Expected>, batch: &Batch) {
    expected.extend(batch.orders.iter().map(|o| Expected {
        order_id: o.id.clone(),
        transaction_id: o.transaction_id.clone(),
    }));
}

/// Posts a batch's notifications in `plan` order to the gateway, unmeasured.
async fn post(
    stack: &Stack,
    batch: &Batch,
    plan: Arc<Vec<usize>>,
    concurrency: usize,
    options: &Options,
) -> LoadResult {
    let addr = stack.gateway.addr;
    let timeout = Duration::from_millis(options.request_timeout_ms);
    let bodies = batch.bodies.clone();
    let total = plan.len();
    load::run(
        total,
        concurrency,
        Duration::from_secs(options.phase_time_limit_secs),
        || NotifyCaller::new(addr, "/wxpay/notify", bodies.clone(), plan.clone(), timeout),
    )
    .await
}

async fn measure_notifications(
    stack: &Stack,
    name: &str,
    concurrency: usize,
    batch: &Batch,
    plan: Arc<Vec<usize>>,
    options: &Options,
    table_rows: Option<u64>,
) -> anyhow::Result<Phase> {
    let addr = stack.gateway.addr;
    let timeout = Duration::from_millis(options.request_timeout_ms);
    let bodies = batch.bodies.clone();
    let total = plan.len();
    measure(
        stack,
        name,
        "gateway",
        concurrency,
        total,
        options,
        table_rows,
        || NotifyCaller::new(addr, "/wxpay/notify", bodies.clone(), plan.clone(), timeout),
    )
    .await
}

/// Runs one phase and reads, around it, the simulator's orderquery counter, every process's
/// CPU time and (after resetting it) its peak RSS, and pay-svc's and order-svc's metrics.
#[allow(clippy::too_many_arguments)]
async fn measure<C: Caller>(
    stack: &Stack,
    name: &str,
    target: &'static str,
    concurrency: usize,
    total: usize,
    options: &Options,
    table_rows: Option<u64>,
    new_caller: impl Fn() -> C,
) -> anyhow::Result<Phase> {
    let mut processes: Vec<(&'static str, u32)> =
        stack.services().iter().map(|s| (s.name, s.pid)).collect();
    processes.push((stack.ack_server.name, stack.ack_server.pid));
    let bench = ("bench", std::process::id());

    // Scraped outside the span of the CPU and memory readings: rendering a page costs a little.
    let metrics_before = stages::Snapshot::take(stack.pay_metrics, stack.order_metrics).await;
    for (process, pid) in &processes {
        if !procfs::reset_peak_rss(*pid) {
            // The figure is then the peak since the process started: never below the phase's.
            println!(
                "note: {name}: could not reset {process}'s peak RSS; it counts from its start"
            );
        }
    }
    let cpu_before: Vec<_> = processes
        .iter()
        .chain([&bench])
        .map(|(name, pid)| (*name, procfs::cpu_time(*pid).unwrap_or_default()))
        .collect();
    let queries_before = stack.sim_client.stats().await?.orderquery_calls;
    let recording = match &options.perf_dir {
        Some(dir) => {
            let pids: Vec<u32> = stack.services().iter().map(|s| s.pid).collect();
            Some(profile::Recording::start(dir, name, &pids)?)
        }
        None => None,
    };

    let load = load::run(
        total,
        concurrency,
        Duration::from_secs(options.phase_time_limit_secs),
        new_caller,
    )
    .await;

    if let Some(recording) = recording {
        let file = recording.finish()?;
        println!("profile: {}", file.display());
    }
    let queries_after = stack.sim_client.stats().await?.orderquery_calls;
    let cpu = cpu_before
        .iter()
        .map(|(name, before)| {
            let pid = if *name == "bench" {
                bench.1
            } else {
                processes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, pid)| *pid)
            };
            let after = procfs::cpu_time(pid).unwrap_or_default();
            (*name, after.saturating_sub(*before))
        })
        .collect();
    let peak_rss = processes
        .iter()
        .map(|(name, pid)| (*name, procfs::peak_rss(*pid)))
        .collect();
    // Informative only: a scrape that fails leaves the phase without the breakdown.
    let stages = match (
        metrics_before,
        stages::Snapshot::take(stack.pay_metrics, stack.order_metrics).await,
    ) {
        (Ok(before), Ok(after)) => Some(stages::Stages::between(&before, &after)),
        (Err(error), _) | (_, Err(error)) => {
            println!("{name}: no breakdown from the services' metrics: {error:#}");
            None
        }
    };
    Ok(Phase {
        name: name.to_owned(),
        target,
        concurrency,
        load,
        orderquery_calls: queries_after.saturating_sub(queries_before),
        peak_rss,
        cpu,
        table_rows,
        stages,
    })
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The machine the figures were taken on.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
        );
    // Other work on the machine skews every figure: say how busy it was.
    let load: Vec<String> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    format!(
        "machine: {model}, {cores} cores, {memory} RAM, Linux {}, load average {}",
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn row_counts_read_well() {
        assert_eq!(human(1_000_000), "1M");
        assert_eq!(human(1_005_000), "1.00M");
        assert_eq!(human(15_000), "15.0k");
        assert_eq!(human(999), "999");
    }

    #[test]
    fn the_machine_line_names_cores() {
        assert!(machine().contains("cores"));
    }

    /// A phase that made `per_second` requests a second for one second.
    fn phase(name: &str, per_second: u64) -> Phase {
        Phase {
            name: name.to_owned(),
            target: "test",
            concurrency: 64,
            load: LoadResult {
                requests: per_second,
                failed: 0,
                elapsed: Duration::from_secs(1),
                latency: hdrhistogram::Histogram::new(3).unwrap(),
                errors: Vec::new(),
                timed_out: false,
            },
            orderquery_calls: 0,
            peak_rss: Vec::new(),
            cpu: Vec::new(),
            table_rows: None,
            stages: None,
        }
    }

    fn first_with_floors(before: u64, after: u64, e2e: u64) -> Findings {
        let mut findings = Findings::default();
        for p in [
            phase(MARK_PAID_FLOOR, before),
            phase("floor: bare HTTP ack", 50_000),
            phase("e2e: first notifications", e2e),
            phase(MARK_PAID_FLOOR_AFTER, after),
        ] {
            findings.record(p);
        }
        let options = crate::cli::Cli::try_parse_from(["bench"]).unwrap().run;
        first_targets(&mut findings, &options);
        findings
    }

    /// The ratio is taken against the mean of the floors on both sides of the first
    /// notifications, and a drift between them is called out.
    #[test]
    fn the_floor_ratio_uses_the_mean_of_both_floors() {
        let drifted = first_with_floors(6000, 4000, 2500);
        let ratio = &drifted.targets[0];
        assert!(
            ratio.measured.starts_with("0.50 (2500 vs 5000/s)"),
            "{}",
            ratio.measured
        );
        assert!(ratio.met);
        assert!(
            drifted.notes.iter().any(|n| n.contains("drifted")),
            "{:?}",
            drifted.notes
        );

        let steady = first_with_floors(5000, 4800, 2000);
        assert!(!steady.targets[0].met);
        assert!(
            !steady.notes.iter().any(|n| n.contains("drifted")),
            "{:?}",
            steady.notes
        );
    }

    /// A phase of `requests` requests that cost `cpu_us` µs of CPU each, split between
    /// order-svc and the load tool.
    fn priced(name: &str, requests: u64, cpu_us: u64) -> Phase {
        let mut p = phase(name, requests);
        let total = Duration::from_micros(cpu_us * requests);
        p.cpu = vec![("order-svc", total / 2), ("bench", total / 2)];
        p
    }

    /// The breakdown subtracts order-svc's two direct calls from a notification's CPU, splits
    /// the ratio into CPU and busy ratios, and bounds it by the leanest possible pipeline.
    #[test]
    fn the_cpu_breakdown_prices_each_part_from_the_floors() {
        let mut findings = Findings::default();
        for p in [
            priced(HTTP_FLOOR, 1000, 25),
            priced(GET_ORDER_FLOOR, 1000, 100),
            priced(GRPC_FLOOR, 1000, 50),
            priced(MARK_PAID_FLOOR, 1000, 280),
            priced("e2e: first notifications", 1000, 900),
            priced(MARK_PAID_FLOOR_AFTER, 1000, 320),
        ] {
            findings.record(p);
        }
        let notes = cpu_breakdown(&findings).unwrap();
        assert!(
            notes[0].contains("900 µs = MarkPaid 300 + GetOrder 100 (as called directly) + 500"),
            "{}",
            notes[0]
        );
        // Each phase ran for one second: cores busy = CPU µs per request x requests / 1e6.
        assert!(
            notes[1].contains("first notifications 0.90, MarkPaid floor 0.30"),
            "{}",
            notes[1]
        );
        assert!(
            notes[1].ends_with("CPU ratio 0.33 x busy ratio 3.00 = 1.00"),
            "{}",
            notes[1]
        );
        // 300 + 100 + 2 x 25 + 1 x 50 = 500 µs; 300 / 500 = 0.60.
        assert!(notes[2].contains("would cost 500 µs"), "{}", notes[2]);
        assert!(
            notes[2].ends_with("about 0.60 x 3.00 = 1.80"),
            "{}",
            notes[2]
        );

        // A second round: its notifications and the floor after it join the means.
        findings.record(priced(&first_name(2), 1000, 700));
        findings.record(priced(&floor_after_name(2), 1000, 400));
        let notes = cpu_breakdown(&findings).unwrap();
        // Notifications (900 + 700) / 2 = 800; floors (280 + 320 + 400) / 3 = 333.
        assert!(
            notes[0].contains("800 µs = MarkPaid 333 + GetOrder 100"),
            "{}",
            notes[0]
        );

        findings.phases.retain(|p| p.name != GET_ORDER_FLOOR);
        assert!(cpu_breakdown(&findings).is_none(), "needs every floor");
    }

    /// Resent copies mixed into the first notifications make their rate count posts: the
    /// targets built on that rate are then left unjudged, with a note saying why.
    #[test]
    fn a_dup_ratio_leaves_the_throughput_targets_unjudged() {
        let mut findings = Findings::default();
        for p in [
            phase(MARK_PAID_FLOOR, 5000),
            phase(HTTP_FLOOR, 50_000),
            phase(&first_name(1), 4000),
            phase(&floor_after_name(1), 5000),
            phase("e2e: duplicates (paid)", 8000),
        ] {
            findings.record(p);
        }
        let options = crate::cli::Cli::try_parse_from(["bench", "--dup-ratio", "0.5"])
            .unwrap()
            .run;
        first_targets(&mut findings, &options);
        let names: Vec<&str> = findings.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["duplicates of paid orders: orderquery calls"],
            "only the target the copies cannot skew"
        );
        assert!(
            findings.notes.iter().any(|n| n.contains("not judged")),
            "{:?}",
            findings.notes
        );
    }

    /// A table that already held about the large point's rows at the small point (a reused
    /// database) measures no growth, so the target is not judged.
    #[test]
    fn growth_from_a_full_table_is_not_judged() {
        let options = crate::cli::Cli::try_parse_from(["bench"]).unwrap().run;
        let point = |rows: u64| {
            let mut p = phase("growth", 1000);
            p.table_rows = Some(rows);
            p
        };
        assert_eq!(
            growth_unmeasured(&options, &point(10_000), &point(1_000_000)),
            None
        );
        // A full PostgreSQL run fills the shared table with the main stack's orders first.
        assert_eq!(
            growth_unmeasured(&options, &point(46_000), &point(1_000_000)),
            None
        );
        let stale = growth_unmeasured(&options, &point(1_000_000), &point(1_000_500));
        assert!(stale.is_some_and(|why| why.contains("1M orders at the small point")));
    }

    /// Several rounds: each ratio is against the floors on its own two sides, and the target
    /// takes their median.
    #[test]
    fn several_rounds_report_the_median_ratio_and_p99() {
        let mut findings = Findings::default();
        // Floors 5000, 5000, 4600, 6000; first notifications 2000, 2700, 2000.
        for p in [
            phase(MARK_PAID_FLOOR, 5000),
            phase(HTTP_FLOOR, 50_000),
            phase(&first_name(1), 2000),
            phase(&floor_after_name(1), 5000),
            phase(&first_name(2), 2700),
            phase(&floor_after_name(2), 4600),
            phase(&first_name(3), 2000),
            phase(&floor_after_name(3), 6000),
            phase("e2e: duplicates (paid)", 8100),
        ] {
            findings.record(p);
        }
        // Every request of round n took the same time: p99 60, 40 and 45 ms.
        for (round, ms) in [(1, 60_000), (2, 40_000), (3, 45_000)] {
            let name = first_name(round);
            let phase = findings.phases.iter_mut().find(|p| p.name == name).unwrap();
            phase.load.latency.record(ms).unwrap();
        }
        let options = crate::cli::Cli::try_parse_from(["bench"]).unwrap().run;
        first_targets(&mut findings, &options);
        // Round ratios: 2000/5000 = 0.40, 2700/4800 = 0.56, 2000/5300 = 0.38.
        let ratio = &findings.targets[0];
        assert_eq!(
            ratio.measured, "0.40 (median of 3 rounds: 0.40, 0.56, 0.38)",
            "{}",
            ratio.measured
        );
        assert!(!ratio.met, "the median, not the best round, decides");
        let p99 = &findings.targets[1];
        assert_eq!(
            p99.measured,
            "45.0 ms (median of 3 rounds: 60.0, 40.0, 45.0)"
        );
        assert!(p99.met);
        // Duplicates are compared with the median first-notification throughput, 2000/s.
        let duplicates = &findings.targets[2];
        assert_eq!(duplicates.measured, "4.05x (8100 vs 2000/s)");
        // Only round 3's floors (4600 and 6000) differ by more than 15% of their mean.
        let drift: Vec<&String> = findings
            .notes
            .iter()
            .filter(|n| n.contains("drifted"))
            .collect();
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(drift[0].starts_with("round 3:"), "{drift:?}");
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(vec![0.3, 0.5, 0.4]), 0.4);
        assert_eq!(median(vec![0.3, 0.5, 0.4, 0.6]), 0.45);
        assert_eq!(median(vec![0.7]), 0.7);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
