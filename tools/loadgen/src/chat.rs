//! Chat figures. Each mode starts its own release `chat` replicas (as child
//! processes on a database and AMQP prefix of its own) and signs its own
//! tokens (testkit's issuer serves the JWKS the replicas fetch), so a run
//! needs nothing but PostgreSQL and RabbitMQ.
//!
//! loadgen chat-idle     --bin target/release/chat --db URL --connections 10000
//! loadgen chat-messages --bin ... --db URL --rooms 1000 --rates 500,1000,2000 --seconds 10
//! loadgen chat-resume   --bin ... --db URL --messages 10000
//! loadgen chat-assign   --bin ... --db URL --rooms 1000 --staff 50

use crate::Args;
use anyhow::{bail, Context};
use diesel::prelude::*;
use domain::Role;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::TestIssuer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Replica {
    child: tokio::process::Child,
    port: u16,
}

impl Replica {
    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/chat{path}", self.port)
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/api/chat/ws", self.port)
    }

    fn rss_kb(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A database, an AMQP prefix, an issuer and the replicas of one run.
struct Setup {
    issuer: TestIssuer,
    db: String,
    prefix: String,
    bin: String,
    pool: u32,
    http: reqwest::Client,
}

impl Setup {
    async fn new(args: &Args, name: &str) -> anyhow::Result<Self> {
        let server = args.text("db", "postgres://postgres@127.0.0.1:5432");
        let db = format!("{}/{name}", server.trim_end_matches('/'));
        let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)?;
        Ok(Self {
            issuer: TestIssuer::start("http://localhost/api/auth").await?,
            db,
            prefix: format!("bench-chat.{}.", std::process::id()),
            bin: args.text("bin", "target/release/chat"),
            pool: args.get("pool", 16)?,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    async fn replica(&self) -> anyhow::Result<Replica> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(&self.bin)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &self.db)
            .env("DATABASE_POOL_SIZE", self.pool.to_string())
            .env("AMQP_PREFIX", &self.prefix)
            .env("AUTH_JWKS_URL", self.issuer.jwks_url())
            .env("JWT_ISSUER", self.issuer.issuer())
            .env("RUST_LOG", "warn")
            .env("WS_MESSAGES_PER_SEC", "1000")
            .env("WS_BURST", "1000")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin))?;
        let replica = Replica { child, port };
        let ready = replica.api("/readyz");
        for _ in 0..300 {
            if let Ok(response) = self.http.get(&ready).send().await {
                if response.status().is_success() {
                    return Ok(replica);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("chat replica on {port} never became ready")
    }

    fn token(&self, role: Role) -> (Uuid, String) {
        let id = Uuid::now_v7();
        (id, self.issuer.token(id, &[role]))
    }

    async fn open_room(&self, replica: &Replica, token: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(replica.api("/rooms"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("open room: {}", response.status());
        }
        Ok(response.json().await?)
    }

    fn cleanup(&self) -> anyhow::Result<()> {
        let (server, name) = self.db.rsplit_once('/').context("database url")?;
        let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)?;
        Ok(())
    }
}

/// Connects and authenticates; returns once the server answered a ping.
async fn connect(url: &str, token: &str) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket
        .send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await?;
    socket
        .send(Message::text(r#"{"type":"ping"}"#.to_string()))
        .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"pong\"") => {
                return Ok(socket)
            }
            Some(Ok(Message::Close(frame))) => bail!("closed: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err.into()),
            None => bail!("closed before the pong"),
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) -> anyhow::Result<()> {
    socket.send(Message::text(frame.to_string())).await?;
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at] as f64 / 1000.0
}

/// `chat-idle`: RSS of one replica holding N authenticated connections.
pub async fn idle(args: &Args) -> anyhow::Result<()> {
    let connections: usize = args.get("connections", 10_000)?;
    let setup = Setup::new(args, "bench_chat_idle").await?;
    let replica = setup.replica().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = replica.rss_kb();
    let url = replica.ws();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(connections);
    let tokens: Vec<String> = (0..connections)
        .map(|_| setup.token(Role::Visitor).1)
        .collect();
    for chunk in tokens.chunks(200) {
        let opened =
            futures_util::future::join_all(chunk.iter().map(|token| connect(&url, token))).await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = replica.rss_kb();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!(
        "{{\"bench\":\"chat_idle_connections\",\"connections\":{},\"rss_before_mb\":{:.1},\"rss_after_mb\":{:.1},\"bytes_per_connection\":{:.0},\"connect_seconds\":{:.2}}}",
        sockets.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per,
        took.as_secs_f64()
    );
    drop(sockets);
    drop(replica);
    setup.cleanup()
}

/// Latencies (µs) of message frames received by the staff side, by step.
#[derive(Default)]
struct Received {
    latencies: Mutex<Vec<u64>>,
    count: AtomicU64,
}

fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

async fn read_messages(mut stream: SplitStream<Socket>, received: Arc<Received>, epoch: Instant) {
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if frame["type"] != "message" {
            continue;
        }
        let Some(sent) = frame["body"]
            .as_str()
            .and_then(|b| b.strip_prefix("t="))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let now = micros_since(epoch);
        received.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut latencies) = received.latencies.lock() {
            latencies.push(now.saturating_sub(sent));
        }
    }
}

/// Reads and drops what comes (acks), so the server never sees a slow reader.
async fn discard(mut stream: SplitStream<Socket>, acks: Arc<AtomicU64>) {
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Text(text) = message {
            if text.as_str().starts_with("{\"type\":\"ack\"") {
                acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `chat-messages`: two replicas, each room's visitor on the first and its
/// staff member on the second; visitors send at paced total rates, and
/// the staff side measures send-to-receive.
pub async fn messages(args: &Args) -> anyhow::Result<()> {
    let rooms: usize = args.get("rooms", 1000)?;
    let staff_count: usize = args.get("staff", 50)?;
    let seconds: f64 = args.get("seconds", 10.0)?;
    let rates: Vec<f64> = args
        .text("rates", "500,1000,2000,3000")
        .split(',')
        .filter_map(|r| r.parse().ok())
        .collect();
    let setup = Setup::new(args, "bench_chat_messages").await?;
    let visitors_side = setup.replica().await?;
    let staff_side = setup.replica().await?;
    let epoch = Instant::now();

    // Rooms, each with its visitor connected to the first replica.
    let mut room_ids = Vec::with_capacity(rooms);
    let mut writers: Vec<SplitSink<Socket, Message>> = Vec::with_capacity(rooms);
    let acks = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..rooms {
        let (_, token) = setup.token(Role::Visitor);
        let room = setup.open_room(&visitors_side, &token).await?;
        let room_id = room["id"].as_str().context("room id")?.to_string();
        let socket = connect(&visitors_side.ws(), &token).await?;
        let (sink, stream) = socket.split();
        tasks.push(tokio::spawn(discard(stream, acks.clone())));
        writers.push(sink);
        room_ids.push(room_id);
    }
    // Staff on the second replica, each following its share of the rooms.
    let received = Arc::new(Received::default());
    let mut staff_sinks = Vec::with_capacity(staff_count);
    for s in 0..staff_count {
        let (_, token) = setup.token(Role::Staff);
        let mut socket = connect(&staff_side.ws(), &token).await?;
        for room in room_ids.iter().skip(s).step_by(staff_count) {
            send(&mut socket, json!({"type": "subscribe", "room_id": room})).await?;
        }
        let (sink, stream) = socket.split();
        tasks.push(tokio::spawn(read_messages(stream, received.clone(), epoch)));
        staff_sinks.push(sink);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sequence = 0u64;
    for rate in rates {
        if let Ok(mut latencies) = received.latencies.lock() {
            latencies.clear();
        }
        received.count.store(0, Ordering::Relaxed);
        acks.store(0, Ordering::Relaxed);
        let total = (rate * seconds) as u64;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = tokio::time::Instant::now();
        for n in 0..total {
            let due = started + interval.mul_f64(n as f64);
            tokio::time::sleep_until(due).await;
            let room = (n as usize) % rooms;
            sequence += 1;
            let frame = json!({
                "type": "send",
                "room_id": room_ids[room],
                "client_msg_id": format!("b{sequence}"),
                "body": format!("t={}", micros_since(epoch)),
            });
            // Not awaited one by one would reorder a room's sends; a
            // room's next send is `rooms` sends later, long after.
            writers[room].send(Message::text(frame.to_string())).await?;
        }
        let sent_for = started.elapsed();
        // Let the last ones arrive.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.count.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies = received
            .latencies
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        latencies.sort_unstable();
        println!(
            "{{\"bench\":\"chat_messages_{}\",\"rate\":{rate},\"sent\":{total},\"acked\":{},\"delivered\":{},\"seconds\":{:.2},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
            rate as u64,
            acks.load(Ordering::Relaxed),
            latencies.len(),
            sent_for.as_secs_f64(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
    }
    for task in tasks {
        task.abort();
    }
    drop(writers);
    drop(staff_sinks);
    drop(visitors_side);
    drop(staff_side);
    // The pgbench floor runs on this database: leave it for bench.sh.
    Ok(())
}

/// `chat-resume`: a client reconnects after missing N messages and
/// subscribes from its last seq; time until the last one arrived.
pub async fn resume(args: &Args) -> anyhow::Result<()> {
    let count: i64 = args.get("messages", 10_000)?;
    let setup = Setup::new(args, "bench_chat_resume").await?;
    let replica = setup.replica().await?;
    let (visitor, token) = setup.token(Role::Visitor);
    let room = setup.open_room(&replica, &token).await?;
    let room_id = room["id"].as_str().context("room id")?.to_string();
    let mut conn = PgConnection::establish(&setup.db)?;
    {
        use diesel::connection::SimpleConnection;
        conn.batch_execute(&format!(
            "INSERT INTO messages (room_id, seq, id, author_id, author_role, body, client_msg_id)
             SELECT '{room_id}', n, gen_random_uuid(), '{visitor}', 'visitor',
                    'message number ' || n || ' of the backlog, about as long as a chat line is', 'c' || n
             FROM generate_series(1, {count}) AS n;
             UPDATE rooms SET last_seq = {count} WHERE id = '{room_id}';
             ANALYZE messages;"
        ))?;
    }
    let mut results = Vec::new();
    for _ in 0..5 {
        let mut socket = connect(&replica.ws(), &token).await?;
        let started = Instant::now();
        send(
            &mut socket,
            json!({"type": "subscribe", "room_id": room_id, "after_seq": 0}),
        )
        .await?;
        let mut seen = 0i64;
        let mut last = 0i64;
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(text.as_str())?;
            if frame["type"] == "message" {
                seen += 1;
                let seq = frame["seq"].as_i64().unwrap_or(0);
                if seq != last + 1 {
                    bail!("replay out of order: {seq} after {last}");
                }
                last = seq;
                if seq == count {
                    break;
                }
            }
        }
        results.push(started.elapsed().as_secs_f64() * 1000.0);
        if seen != count {
            bail!("replayed {seen} of {count}");
        }
        let _ = socket.close(None).await;
    }
    results.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"chat_resume\",\"messages\":{count},\"runs\":{},\"best_ms\":{:.1},\"median_ms\":{:.1},\"worst_ms\":{:.1}}}",
        results.len(),
        results[0],
        results[results.len() / 2],
        results[results.len() - 1]
    );
    drop(replica);
    setup.cleanup()
}

/// `chat-assign`: N rooms opened at once against S online staff with room
/// for all; open-to-assigned from the database's own clock, and whether
/// anyone went over capacity.
pub async fn assign(args: &Args) -> anyhow::Result<()> {
    let rooms: usize = args.get("rooms", 1000)?;
    let staff_count: usize = args.get("staff", 50)?;
    let capacity = rooms.div_ceil(staff_count);
    let setup = Setup::new(args, "bench_chat_assign").await?;
    let replicas = [setup.replica().await?, setup.replica().await?];
    let mut staff_sockets = Vec::new();
    for s in 0..staff_count {
        let (_, token) = setup.token(Role::Staff);
        let replica = &replicas[s % 2];
        let response = setup
            .http
            .put(replica.api("/staff/me/settings"))
            .bearer_auth(&token)
            .json(&json!({"max_active_rooms": capacity, "notify_by_email": false}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("settings: {}", response.status());
        }
        let socket = connect(&replica.ws(), &token).await?;
        let (sink, stream) = socket.split();
        tokio::spawn(discard(stream, Arc::new(AtomicU64::new(0))));
        staff_sockets.push(sink);
    }
    let tokens: Vec<String> = (0..rooms).map(|_| setup.token(Role::Visitor).1).collect();
    let started = Instant::now();
    let opened = futures_util::future::join_all(tokens.iter().enumerate().map(|(i, token)| {
        let setup = &setup;
        let replica = &replicas[i % 2];
        async move {
            let t = Instant::now();
            let room = setup.open_room(replica, token).await?;
            Ok::<_, anyhow::Error>((room, t.elapsed()))
        }
    }))
    .await;
    let wall = started.elapsed();
    let mut request_us = Vec::new();
    let mut assigned_at_once = 0;
    for outcome in opened {
        let (room, took) = outcome?;
        request_us.push(took.as_micros() as u64);
        if room["status"] == "active" {
            assigned_at_once += 1;
        }
    }
    request_us.sort_unstable();
    #[derive(QueryableByName)]
    struct Waited {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        us: i64,
    }
    let mut conn = PgConnection::establish(&setup.db)?;
    let mut waited: Vec<u64> = diesel::sql_query(
        "SELECT (extract(epoch FROM d.decided_at - r.created_at) * 1000000)::bigint AS us
         FROM assignment_decisions d JOIN rooms r ON r.id = d.room_id
         WHERE d.outcome = 'assigned'",
    )
    .load::<Waited>(&mut conn)?
    .into_iter()
    .map(|w| w.us.max(0) as u64)
    .collect();
    waited.sort_unstable();
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let over: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT assignee_id FROM rooms r JOIN agents a ON a.user_id = r.assignee_id
           WHERE r.status = 'active' GROUP BY assignee_id, a.max_active_rooms
           HAVING count(*) > a.max_active_rooms) t",
    )
    .get_result(&mut conn)?;
    println!(
        "{{\"bench\":\"chat_assign\",\"rooms\":{rooms},\"staff\":{staff_count},\"assigned\":{},\"assigned_at_once\":{assigned_at_once},\"over_capacity\":{},\"seconds\":{:.2},\"open_to_assigned_p50_ms\":{:.2},\"open_to_assigned_p99_ms\":{:.2},\"open_to_assigned_max_ms\":{:.2},\"request_p50_ms\":{:.2},\"request_p99_ms\":{:.2}}}",
        waited.len(),
        over.n,
        wall.as_secs_f64(),
        percentile(&waited, 0.5),
        percentile(&waited, 0.99),
        percentile(&waited, 1.0),
        percentile(&request_us, 0.5),
        percentile(&request_us, 0.99),
    );
    drop(staff_sockets);
    drop(replicas);
    setup.cleanup()
}
