//! Load for `scripts/bench.sh`. Closed loop: each of N connections sends its
//! next request when the previous answer arrived; latencies are recorded
//! per request and reported as throughput, p50, p99 and max.
//!
//! loadgen argon2  --threads T --seconds S [--memory KIB --iterations N --parallelism P]
//! loadgen login   --base URL --users N --connections C --seconds S
//! loadgen sessions --base URL --users N --connections C --seconds S
//! loadgen refresh --base URL --users N --connections C --seconds S
//! loadgen me      --base ACCOUNTS_URL --auth AUTH_URL --users N --connections C --seconds S
//! loadgen search  --base ACCOUNTS_URL --token ADMIN_TOKEN --connections C --seconds S --rows N
//! loadgen outbox  --db URL --events N --writers W
//! loadgen smtp    --port P --emails N --prefix AMQP_PREFIX
//! loadgen chat-idle|chat-messages|chat-resume|chat-assign (see chat.rs)
//! loadgen scheduling-allocate|scheduling-heartbeats (see scheduling.rs)

mod chat;
mod pipeline;
mod scheduling;

use anyhow::{bail, Context};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "benchmark password 1";

pub(crate) struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> (String, Self) {
        let mut raw = std::env::args().skip(1);
        let mode = raw.next().unwrap_or_default();
        let mut map = HashMap::new();
        while let Some(flag) = raw.next() {
            let value = raw.next().unwrap_or_default();
            map.insert(flag.trim_start_matches('-').to_string(), value);
        }
        (mode, Self(map))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.0.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{name}: cannot parse {v}")),
            None => Ok(default),
        }
    }

    fn text(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

#[derive(Default)]
pub(crate) struct Report {
    latencies_us: Vec<u64>,
    errors: u64,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }

    fn print(mut self, label: &str, elapsed: Duration) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                self.latencies_us[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0
            }
        };
        println!(
            "{{\"bench\":\"{label}\",\"requests\":{n},\"errors\":{},\"seconds\":{:.2},\"rps\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
            self.errors,
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mode, args) = Args::parse();
    match mode.as_str() {
        "argon2" => argon2_rate(&args),
        "login" | "sessions" | "refresh" | "me" | "search" => http(&mode, &args).await,
        "outbox" => pipeline::outbox(&args).await,
        "smtp" => pipeline::smtp(&args).await,
        "forget" => forget(&args).await,
        "chat-idle" => chat::idle(&args).await,
        "chat-messages" => chat::messages(&args).await,
        "chat-resume" => chat::resume(&args).await,
        "chat-assign" => chat::assign(&args).await,
        "scheduling-allocate" => scheduling::allocate(&args).await,
        "scheduling-heartbeats" => scheduling::heartbeat_load(&args).await,
        _ => bail!("usage: loadgen argon2|login|sessions|refresh|me|search|outbox|smtp|forget|chat-idle|chat-messages|chat-resume|chat-assign|scheduling-allocate|scheduling-heartbeats [--flag value ...]"),
    }
}

/// `loadgen forget --prefix P --queues a,b [--exchanges c,d]`: deletes the
/// queues a bench run left (physical names), its `events` and `jobs`
/// exchanges and any other (logical) exchanges named.
async fn forget(args: &Args) -> anyhow::Result<()> {
    let prefix = args.text("prefix", "");
    if prefix.is_empty() {
        bail!("forget needs --prefix");
    }
    let queues: Vec<String> = args
        .text("queues", "")
        .split(',')
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .collect();
    testkit::amqp::delete_all(
        args.text("amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        bus::Names::new(prefix),
        queues,
        [bus::topology::EVENTS, bus::topology::JOBS]
            .into_iter()
            .map(str::to_string)
            .chain(
                args.text("exchanges", "")
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(str::to_string),
            )
            .collect(),
    )
    .await?;
    Ok(())
}

fn argon2_rate(args: &Args) -> anyhow::Result<()> {
    let params = argon2::Params::new(
        args.get("memory", 19456)?,
        args.get("iterations", 2)?,
        args.get("parallelism", 1)?,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads: usize = args.get("threads", 2)?;
    let seconds: f64 = args.get("seconds", 10.0)?;
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = hasher
        .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let hasher = hasher.clone();
            let hash = hash.clone();
            std::thread::spawn(move || {
                let mut report = Report::default();
                let parsed = PasswordHash::new(&hash).ok();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = parsed
                        .as_ref()
                        .is_some_and(|p| hasher.verify_password(PASSWORD.as_bytes(), p).is_ok());
                    if ok {
                        report.latencies_us.push(t.elapsed().as_micros() as u64);
                    } else {
                        report.errors += 1;
                    }
                }
                report
            })
        })
        .collect();
    let mut total = Report::default();
    for worker in workers {
        total.merge(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("worker panicked"))?,
        );
    }
    total.print("argon2id_verify", started.elapsed());
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A signed-in user: the access token and the current refresh cookie.
struct Account {
    email: String,
    access: String,
    refresh: String,
}

fn cookie_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("refresh_token="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

async fn prepare(base: &str, users: usize) -> anyhow::Result<Vec<Account>> {
    let http = client()?;
    let run = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    let mut accounts = Vec::with_capacity(users);
    for i in 0..users {
        let email = format!("bench-{run:x}-{i}@example.com");
        let registered = http
            .post(format!("{base}/register"))
            .json(
                &serde_json::json!({"email": email, "password": PASSWORD, "display_name": "Bench"}),
            )
            .send()
            .await?;
        if !registered.status().is_success() {
            bail!("register failed: {}", registered.status());
        }
        let login = http
            .post(format!("{base}/login"))
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        let refresh = cookie_of(&login).context("no refresh cookie")?;
        let body: serde_json::Value = login.json().await?;
        let access = body["access_token"]
            .as_str()
            .context("no access token")?
            .to_string();
        accounts.push(Account {
            email,
            access,
            refresh,
        });
    }
    Ok(accounts)
}

async fn http(mode: &str, args: &Args) -> anyhow::Result<()> {
    let base = args.text("base", "http://127.0.0.1:8001/api/auth");
    let auth = args.text("auth", &base);
    let users: usize = args.get("users", 64)?;
    let connections: usize = args.get("connections", 64)?;
    let seconds: f64 = args.get("seconds", 10.0)?;
    let mut accounts = if mode == "search" {
        let token = args.text("token", "");
        vec![Account {
            email: String::new(),
            access: token,
            refresh: String::new(),
        }]
    } else {
        prepare(&auth, users).await?
    };
    if mode == "me" {
        wait_for_profiles(&base, &accounts).await?;
    }
    if mode == "search" {
        accounts[0].refresh = args.text("rows", "100000");
    }
    let accounts: Vec<Arc<tokio::sync::Mutex<Account>>> = accounts
        .into_iter()
        .map(|a| Arc::new(tokio::sync::Mutex::new(a)))
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let account = accounts[c % accounts.len()].clone();
        let base = base.clone();
        let mode = mode.to_string();
        let http = client()?;
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = one_request(&http, &base, &mode, &account).await;
                if ok {
                    report.latencies_us.push(t.elapsed().as_micros() as u64);
                } else {
                    report.errors += 1;
                }
            }
            report
        }));
    }
    let mut total = Report::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.print(mode, started.elapsed());
    Ok(())
}

/// Profiles reach accounts through an event; wait until each one is there.
async fn wait_for_profiles(base: &str, accounts: &[Account]) -> anyhow::Result<()> {
    let http = client()?;
    for account in accounts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = http
                .get(format!("{base}/me"))
                .bearer_auth(&account.access)
                .send()
                .await?
                .status();
            if status.is_success() {
                break;
            }
            if Instant::now() > deadline {
                bail!("profile never appeared in accounts ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn one_request(
    http: &reqwest::Client,
    base: &str,
    mode: &str,
    account: &tokio::sync::Mutex<Account>,
) -> bool {
    match mode {
        "me" | "search" => {
            let (token, path) = {
                let account = account.lock().await;
                let path = if mode == "me" {
                    "/me".to_string()
                } else {
                    // A substring of one of the seeded names, different each time.
                    let rows: u64 = account.refresh.parse().unwrap_or(100_000);
                    let seed = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos() as u64)
                        .unwrap_or(7);
                    let n = seed.wrapping_mul(6364136223846793005) % rows.max(1);
                    format!("/users?q=son{n}&limit=50")
                };
                (account.access.clone(), path)
            };
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
        "login" => {
            let email = account.lock().await.email.clone();
            let response = http
                .post(format!("{base}/login"))
                .json(&serde_json::json!({"email": email, "password": PASSWORD}))
                .send()
                .await;
            matches!(response, Ok(r) if r.status().is_success())
        }
        "sessions" => {
            let token = account.lock().await.access.clone();
            let response = http
                .get(format!("{base}/sessions"))
                .bearer_auth(token)
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
        _ => {
            // Each refresh spends the cookie: hold the account while rotating.
            let mut account = account.lock().await;
            let response = http
                .post(format!("{base}/refresh"))
                .header("cookie", account.refresh.clone())
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => match cookie_of(&r) {
                    Some(cookie) => {
                        account.refresh = cookie;
                        true
                    }
                    None => false,
                },
                _ => false,
            }
        }
    }
}
