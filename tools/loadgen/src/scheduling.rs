//! Scheduler load, against a release `instance-scheduling` that loadgen
//! starts itself (its own database and AMQP prefix; testkit's issuer
//! signs the users' tokens):
//!
//! loadgen scheduling-allocate   --bin B --db URL --hosts 50 --clients 100 --seconds 10
//! loadgen scheduling-heartbeats --bin B --db URL --hosts 1000 --clients 10 --seconds 10
//!
//! Every allocation is a new user's (one live session each), as real
//! clients are; hosts are registered through the API and heartbeat
//! through it.

use crate::{Args, Report};
use anyhow::{bail, Context};
use diesel::{Connection, PgConnection, RunQueryDsl};
use domain::Role;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestIssuer;
use uuid::Uuid;

const SECRET: &str = "benchmark-registration-secret";

struct Scheduler {
    child: tokio::process::Child,
    port: u16,
    db: String,
    issuer: TestIssuer,
    http: reqwest::Client,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A registered host: its id and credential.
struct Host {
    id: String,
    credential: String,
}

impl Scheduler {
    async fn start(args: &Args, name: &str) -> anyhow::Result<Self> {
        let server = args.text("db", "postgres://postgres@127.0.0.1:5432");
        let db = format!("{}/{name}", server.trim_end_matches('/'));
        let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)?;
        let issuer = TestIssuer::start("http://localhost/api/auth").await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let bin = args.text("bin", "target/release/instance-scheduling");
        let child = tokio::process::Command::new(&bin)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &db)
            .env(
                "DATABASE_POOL_SIZE",
                args.get::<u32>("pool", 16)?.to_string(),
            )
            .env(
                "AMQP_PREFIX",
                format!("bench-scheduling.{}.", std::process::id()),
            )
            .env("AUTH_JWKS_URL", issuer.jwks_url())
            .env("JWT_ISSUER", issuer.issuer())
            .env("REGISTRATION_SECRET", SECRET)
            .env("RESERVATION_TTL_SECS", "3600")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let scheduler = Self {
            child,
            port,
            db,
            issuer,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        for _ in 0..300 {
            if let Ok(response) = scheduler.http.get(scheduler.url("/readyz")).send().await {
                if response.status().is_success() {
                    return Ok(scheduler);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the scheduler on {port} never became ready")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/scheduling{path}", self.port)
    }

    async fn register(&self, hosts: usize, capacity: u32) -> anyhow::Result<Vec<Host>> {
        let mut registered = Vec::with_capacity(hosts);
        for chunk in (0..hosts).collect::<Vec<_>>().chunks(50) {
            let answers = futures_util::future::join_all(chunk.iter().map(|i| {
                self.http
                    .post(self.url("/instances/register"))
                    .bearer_auth(SECRET)
                    .json(&json!({"region": "local", "capacity": capacity,
                                  "address": format!("10.0.{}.{}:9000", i / 250, i % 250 + 1)}))
                    .send()
            }))
            .await;
            for answer in answers {
                let body: Value = answer?.error_for_status()?.json().await?;
                registered.push(Host {
                    id: body["id"].as_str().context("id")?.to_string(),
                    credential: body["credential"]
                        .as_str()
                        .context("credential")?
                        .to_string(),
                });
            }
        }
        Ok(registered)
    }

    /// Fresh users' tokens, signed before the clock starts.
    fn tokens(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| self.issuer.token(Uuid::now_v7(), &[Role::User]))
            .collect()
    }

    /// `clients` closed loops allocating for `seconds`, each time as a new
    /// user.
    async fn allocate(
        &self,
        clients: usize,
        seconds: u64,
        tokens: Vec<String>,
    ) -> (Report, Duration) {
        self.allocate_at(clients, seconds, tokens, None).await
    }

    /// As [`allocate`](Self::allocate); with `rate`, the clients together
    /// send that many a second on a fixed schedule, and each latency runs
    /// from when its request was due (a slow answer delays the next
    /// request, and that wait counts).
    async fn allocate_at(
        &self,
        clients: usize,
        seconds: u64,
        tokens: Vec<String>,
        rate: Option<f64>,
    ) -> (Report, Duration) {
        let tokens = Arc::new(std::sync::Mutex::new(tokens));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let loops = (0..clients).map(|_| {
            let tokens = tokens.clone();
            let http = self.http.clone();
            let url = self.url("/sessions");
            async move {
                let mut report = Report::default();
                let interval = rate.map(|rate| Duration::from_secs_f64(clients as f64 / rate));
                let mut due =
                    Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(rand_phase()));
                while Instant::now() < deadline {
                    let Some(token) = tokens.lock().ok().and_then(|mut t| t.pop()) else {
                        break;
                    };
                    let sent = match interval {
                        Some(interval) => {
                            tokio::time::sleep_until(due.into()).await;
                            let scheduled = due;
                            due += interval;
                            scheduled
                        }
                        None => Instant::now(),
                    };
                    let answer = http
                        .post(&url)
                        .bearer_auth(token)
                        .json(&json!({"region": "local"}))
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                            let _ = response.bytes().await;
                            report.latencies_us.push(sent.elapsed().as_micros() as u64);
                        }
                        _ => report.errors += 1,
                    }
                }
                report
            }
        });
        let mut all = Report::default();
        for report in futures_util::future::join_all(loops).await {
            all.merge(report);
        }
        (all, started.elapsed())
    }

    fn count(&self, sql: &str) -> anyhow::Result<i64> {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = PgConnection::establish(&self.db)?;
        let count: Count = diesel::sql_query(sql).get_result(&mut conn)?;
        Ok(count.n)
    }
}

/// Heartbeats of every host, once a second each, until `stop`; the
/// latencies.
async fn heartbeats(scheduler: &Scheduler, hosts: &[Host], stop: Arc<AtomicBool>) -> Report {
    let beats = hosts.iter().enumerate().map(|(i, host)| {
        let http = scheduler.http.clone();
        let url = scheduler.url(&format!("/instances/{}/heartbeat", host.id));
        let credential = host.credential.clone();
        let stop = stop.clone();
        // Spread over the second, as real hosts started at different times are.
        let phase = Duration::from_micros((i as u64 * 1_000_000) / hosts.len().max(1) as u64);
        async move {
            let mut report = Report::default();
            tokio::time::sleep(phase).await;
            let mut next = tokio::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .bearer_auth(&credential)
                    .json(&json!({"cpu_pct": 20.0, "mem_pct": 30.0, "sessions": []}))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        report.latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => report.errors += 1,
                }
                next += Duration::from_secs(1);
                tokio::time::sleep_until(next).await;
            }
            report
        }
    });
    let mut all = Report::default();
    for report in futures_util::future::join_all(beats).await {
        all.merge(report);
    }
    all
}

/// Where in its interval a paced client starts, so clients do not send
/// in step.
fn rand_phase() -> f64 {
    (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0
}

fn drop_database(db: &str) -> anyhow::Result<()> {
    let (server, name) = db.rsplit_once('/').context("database url")?;
    let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)?;
    Ok(())
}

/// `scheduling-allocate`: allocation rate and latency at `clients` over
/// `hosts` hosts (which heartbeat meanwhile), and whether any went over
/// capacity. Leaves its database for the floor unless `--keep false`.
pub async fn allocate(args: &Args) -> anyhow::Result<()> {
    let hosts: usize = args.get("hosts", 50)?;
    let clients: usize = args.get("clients", 100)?;
    let seconds: u64 = args.get("seconds", 10)?;
    let scheduler = Scheduler::start(args, "bench_scheduling_allocate").await?;
    let registered = scheduler.register(hosts, 1000).await?;
    let tokens = scheduler.tokens(args.get("tokens", 40_000)?);
    // Warm-up: the JWKS fetch, the pool, the plans.
    let (_, _) = scheduler
        .allocate(clients.min(10), 1, scheduler.tokens(500))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let beating = {
        let stop = stop.clone();
        let scheduler = &scheduler;
        let registered = &registered;
        async move { heartbeats(scheduler, registered, stop).await }
    };
    let rate: Option<f64> = match args.text("rate", "") {
        raw if raw.is_empty() => None,
        raw => Some(raw.parse().context("--rate")?),
    };
    let (allocations, beats) = tokio::join!(
        async {
            let result = scheduler.allocate_at(clients, seconds, tokens, rate).await;
            stop.store(true, Ordering::Relaxed);
            result
        },
        beating
    );
    let (report, elapsed) = allocations;
    let label = match rate {
        Some(rate) => format!("scheduling_allocate_paced_{rate:.0}"),
        None => "scheduling_allocate".to_string(),
    };
    report.print(&label, elapsed);
    beats.print("scheduling_allocate_beside_heartbeats", elapsed);
    let over =
        scheduler.count("SELECT count(*) AS n FROM instances WHERE active_sessions > capacity")?;
    let leaks = scheduler.count(
        "SELECT count(*) AS n FROM instances i WHERE i.active_sessions <> (SELECT count(*) FROM sessions s
           WHERE s.instance_id = i.id AND s.status IN ('allocated', 'connected'))",
    )?;
    println!("{{\"bench\":\"scheduling_capacity\",\"over_capacity\":{over},\"slot_count_mismatches\":{leaks}}}");
    let db = scheduler.db.clone();
    drop(scheduler);
    if args.text("keep", "true") != "true" {
        drop_database(&db)?;
    }
    Ok(())
}

/// `scheduling-heartbeats`: `hosts` hosts beating once a second each;
/// allocation latency at a paced `--rate` (200 /s) from `clients`
/// without them, then beside them.
pub async fn heartbeat_load(args: &Args) -> anyhow::Result<()> {
    let hosts: usize = args.get("hosts", 1000)?;
    let clients: usize = args.get("clients", 10)?;
    let seconds: u64 = args.get("seconds", 10)?;
    let rate: f64 = args.get("rate", 200.0)?;
    let scheduler = Scheduler::start(args, "bench_scheduling_heartbeats").await?;
    let registered = scheduler.register(hosts, 100).await?;
    let (_, _) = scheduler.allocate(clients, 1, scheduler.tokens(500)).await;
    // Alone: registration left every host fresh for HEARTBEAT_STALE_SECS.
    let alone_seconds = seconds.min(5);
    let (alone, elapsed) = scheduler
        .allocate_at(clients, alone_seconds, scheduler.tokens(20_000), Some(rate))
        .await;
    alone.print("scheduling_allocate_alone", elapsed);
    let stop = Arc::new(AtomicBool::new(false));
    let tokens = scheduler.tokens(40_000);
    let beating = {
        let stop = stop.clone();
        let scheduler = &scheduler;
        let registered = &registered;
        async move { heartbeats(scheduler, registered, stop).await }
    };
    let started = Instant::now();
    let (beside, beats) = tokio::join!(
        async {
            // The beats first reach every host within a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let result = scheduler
                .allocate_at(clients, seconds, tokens, Some(rate))
                .await;
            stop.store(true, Ordering::Relaxed);
            result
        },
        beating
    );
    let (beside, elapsed) = beside;
    beside.print("scheduling_allocate_beside_1000_hosts", elapsed);
    beats.print("scheduling_heartbeats", started.elapsed());
    let db = scheduler.db.clone();
    drop(scheduler);
    drop_database(&db)
}
