//! Benchmarks of the messaging path: outbox → relay → consumer, and email
//! jobs → worker → SMTP, each against its plain baseline.

use crate::{Args, Report};
use anyhow::Context;
use bus::{Broker, ConsumerSpec, Handler, HandlerError, Incoming, OutboxRelay};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use domain::messages::{AccountEnabled, Contract, EmailJob, EmailTemplate, Envelope};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

diesel::table! {
    bench_effects (user_id) {
        user_id -> Uuid,
        revision -> BigInt,
    }
}

/// The consumer's work: the event's row written with its inbox record, in
/// batches, through the same [`bus::inbox::Inboxed`] the services use.
struct Effect;

impl bus::inbox::Transactional for Effect {
    type Change = AccountEnabled;

    fn parse(&self, message: &Incoming) -> Result<AccountEnabled, HandlerError> {
        Ok(message.envelope::<AccountEnabled>()?.data)
    }

    fn apply(conn: &mut PgConnection, change: &AccountEnabled) -> QueryResult<()> {
        diesel::insert_into(bench_effects::table)
            .values((
                bench_effects::user_id.eq(change.user_id),
                bench_effects::revision.eq(change.revision),
            ))
            .execute(conn)
            .map(drop)
    }
}

/// Notes when each event was handled (its handler's transaction
/// committed). Latencies are taken against the commit times at the end: a
/// writer notes its commit time just after the commit, and the pipeline
/// can be faster than that (a first message can be handled before its
/// writer's thread runs again).
struct Recorder {
    inbox: Option<bus::inbox::Inboxed<Effect>>,
    handled: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Recorder {
    fn record(&self, message_id: &str) {
        if let Ok(mut handled) = self.handled.lock() {
            handled
                .entry(message_id.to_string())
                .or_insert_with(Instant::now);
        }
    }
}

impl Handler for Recorder {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        bus::consumer::only(self.handle_batch(vec![message]).await)
    }

    async fn handle_batch(&self, messages: Vec<Incoming>) -> Vec<Result<(), HandlerError>> {
        let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
        let results = match &self.inbox {
            Some(inbox) => inbox.handle_batch(messages).await,
            None => messages.iter().map(|_| Ok(())).collect(),
        };
        for (id, result) in ids.iter().zip(&results) {
            if result.is_ok() {
                self.record(id);
            }
        }
        results
    }
}

/// `loadgen outbox --db URL --events N --writers W`
pub async fn outbox(args: &Args) -> anyhow::Result<()> {
    let url = args.text(
        "db",
        "postgres://postgres@127.0.0.1:5432/bench_outbox?sslmode=disable",
    );
    let events: usize = args.get("events", 10_000)?;
    let writers: usize = args.get("writers", 8)?;
    platform::db::ensure_database(&url)?;
    let handlers: usize = args.get("handlers", 4)?;
    let pool = platform::db::pool(&url, (writers + handlers) as u32);
    {
        let mut conn = pool.get()?;
        conn.batch_execute("DROP TABLE IF EXISTS outbox, processed_messages, bench_effects")?;
        conn.batch_execute(bus::outbox::MIGRATION_SQL)?;
        conn.batch_execute(
            "CREATE TABLE bench_effects (user_id UUID NOT NULL, revision BIGINT NOT NULL)",
        )?;
    }
    // AMQP names of this run's own, deleted when it ends.
    let names = testkit::TestBus::new();
    let broker = Broker::new(
        args.text("amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        names.names().clone(),
        "bench",
    );
    let committed = Arc::new(Mutex::new(HashMap::with_capacity(events)));
    let handled = Arc::new(Mutex::new(HashMap::with_capacity(events)));
    let shutdown = platform::Shutdown::new();
    let spec = ConsumerSpec::new("bench.events")
        .bind("events", AccountEnabled::TYPE)
        .prefetch(args.get("prefetch", 128)?)
        .batch(args.get("batch", 32)?)
        .concurrency(handlers);
    names.track_consumer(&spec);
    let topology = bus::Topology::new().consumer(&spec);
    let consumer = tokio::spawn(bus::consumer::run(
        broker.clone(),
        spec,
        Arc::new(Recorder {
            inbox: (args.text("inbox", "on") == "on")
                .then(|| bus::inbox::Inboxed::new(pool.clone(), "bench", Effect)),
            handled: handled.clone(),
        }),
        shutdown.clone(),
    ));
    let relay = OutboxRelay::new(pool.clone(), broker.clone(), topology);
    let wake = relay.handle();
    // `burst`: writers and relay run together; `prefill`: the events are
    // committed first and the relay started after (the pipeline's own
    // rate); `paced`: writers commit at `--rate` events/s (latency).
    let mode = args.text("mode", "burst");
    let rate: f64 = args.get("rate", 1000.0)?;
    let mut relay = Some(relay);
    let mut relay_task = None;
    if mode != "prefill" {
        relay_task = relay.take().map(|r| tokio::spawn(r.run(shutdown.clone())));
        tokio::time::sleep(Duration::from_secs(2)).await; // consumer bound, relay connected
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await; // consumer bound
    }

    let mut started = Instant::now();
    let mut tasks = Vec::new();
    let interval = Duration::from_secs_f64(writers as f64 / rate.max(1.0));
    for w in 0..writers {
        let pool = pool.clone();
        let committed = committed.clone();
        let wake = wake.clone();
        let paced = mode == "paced";
        tasks.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<()> {
                let mut conn = pool.get()?;
                let mut next = Instant::now();
                for i in (w..events).step_by(writers) {
                    if paced {
                        next += interval;
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    let id = conn.transaction(|conn| {
                        bus::outbox::enqueue(
                            conn,
                            AccountEnabled {
                                user_id: uuid::Uuid::new_v4(),
                                revision: i as i64,
                            },
                        )
                    })?;
                    if let Ok(mut map) = committed.lock() {
                        map.insert(id.to_string(), Instant::now());
                    }
                    wake.wake();
                }
                Ok(())
            },
        ));
    }
    for task in tasks {
        task.await??;
    }
    let written = started.elapsed();
    if let Some(relay) = relay.take() {
        // Prefilled: latency from commit means nothing; time the drain only.
        if let Ok(mut map) = committed.lock() {
            let now = Instant::now();
            map.values_mut().for_each(|at| *at = now);
        }
        eprintln!("outbox: prefilled; the relay starts");
        started = Instant::now();
        relay_task = Some(tokio::spawn(relay.run(shutdown.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while handled.lock().map(|h| h.len()).unwrap_or(0) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.trigger();
    let _ = consumer.await;
    if let Some(task) = relay_task {
        let _ = task.await;
    }
    let report = {
        let committed = committed.lock().map(|c| c.clone()).unwrap_or_default();
        let handled = handled.lock().map(|h| h.clone()).unwrap_or_default();
        let latencies_us = handled
            .iter()
            .filter_map(|(id, at)| Some(at.saturating_duration_since(*committed.get(id)?)))
            .map(|latency| latency.as_micros() as u64)
            .collect();
        Report {
            latencies_us,
            errors: events.saturating_sub(handled.len()) as u64,
        }
    };
    eprintln!(
        "outbox: {events} events committed in {:.2}s by {writers} writers",
        written.as_secs_f64()
    );
    let label = if mode == "paced" {
        format!("outbox_to_consumer_paced_{}", rate as u64)
    } else {
        format!("outbox_to_consumer_{mode}")
    };
    report.print(&label, elapsed);
    Ok(())
}

fn job(i: usize) -> Envelope<EmailJob> {
    Envelope::new(EmailJob {
        to: format!("user{i}@example.com"),
        template: EmailTemplate::Welcome,
        vars: [("display_name".to_string(), format!("User {i}"))]
            .into_iter()
            .collect(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    })
}

/// `loadgen smtp --port P --emails N --prefix PFX`: starts an SMTP sink,
/// measures a plain lettre client pushing N messages into it, then
/// publishes N email jobs for a worker (started by bench.sh against the
/// same sink) and measures queue-to-delivered.
pub async fn smtp(args: &Args) -> anyhow::Result<()> {
    let emails: usize = args.get("emails", 10_000)?;
    let concurrency: usize = args.get("concurrency", 8)?;
    let prefix = args.text("prefix", "");
    let sink = testkit::SmtpSink::start_on(args.get("port", 2525)?).await?;

    // Baseline: a plain SMTP client, pooled, `concurrency` at a time.
    use lettre::AsyncTransport;
    let client = Arc::new(
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port())
            .build(),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            for i in (c..emails).step_by(concurrency) {
                let message = lettre::Message::builder()
                    .from("Platform <no-reply@localhost>".parse().context("from")?)
                    .to(format!("user{i}@example.com").parse().context("to")?)
                    .subject("Welcome")
                    .body(format!("Hello User {i}"))?;
                let t = Instant::now();
                match client.send(message).await {
                    Ok(_) => report.latencies_us.push(t.elapsed().as_micros() as u64),
                    Err(_) => report.errors += 1,
                }
            }
            Ok::<_, anyhow::Error>(report)
        }));
    }
    let mut baseline = Report::default();
    for task in tasks {
        baseline.merge(task.await??);
    }
    baseline.print("smtp_plain_client", started.elapsed());

    // The worker: publish jobs, wait for the sink to have them all.
    let already = sink.received().len();
    let broker = Broker::new(
        args.text("amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        bus::Names::new(prefix),
        "bench",
    );
    let connection = broker.connect().await?;
    let publisher = bus::Publisher::open(&connection).await?;
    bus::Topology::new()
        .job_queue("email")
        .declare(publisher.channel(), &broker.names)
        .await?;
    let mut published = HashMap::with_capacity(emails);
    let started = Instant::now();
    let mut pending = Vec::with_capacity(256);
    for i in 0..emails {
        let envelope = job(i);
        published.insert(format!("<{}@platform>", envelope.id), Instant::now());
        let message = bus::publisher::OutgoingMessage {
            exchange: broker.names.physical("jobs"),
            routing_key: "email".into(),
            message_id: envelope.id.to_string(),
            message_type: "email".into(),
            payload: serde_json::to_vec(&envelope)?,
            headers: Default::default(),
            mandatory: true,
        };
        pending.push(publisher.send(&message).await?);
        if pending.len() == 256 {
            for confirm in pending.drain(..) {
                confirm.wait().await?;
            }
        }
    }
    for confirm in pending.drain(..) {
        confirm.wait().await?;
    }
    let received = sink
        .wait_for(already + emails, Duration::from_secs(300))
        .await;
    let elapsed = started.elapsed();
    let mut report = Report::default();
    for mail in &received[already..] {
        let id = mail
            .data
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .map(str::trim)
            .unwrap_or_default();
        match (published.get(id), mail.received_at) {
            (Some(at), received_at) => report
                .latencies_us
                .push(received_at.saturating_duration_since(*at).as_micros() as u64),
            _ => report.errors += 1,
        }
    }
    report.errors += (emails as u64).saturating_sub((received.len() - already) as u64);
    report.print("worker_email", elapsed);
    let _ = connection.close(200, "done").await;
    Ok(())
}
