//! The consumer runtime and the outbox relay against a real RabbitMQ and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bus::{Broker, ConsumerSpec, Handler, HandlerError, Incoming, OutboxRelay};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use domain::messages::{AccountEnabled, Contract, Envelope};
use platform::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{TestBus, TestDatabase};
use tokio::task::JoinHandle;
use uuid::Uuid;

const QUEUE: &str = "probe.events";

/// Records every call; fails as told.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(Instant, u32, Option<String>)>>,
    transient_failures: u32,
    permanent: bool,
    delay: Duration,
}

impl Handler for Scripted {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let trace = platform::telemetry::current_trace_id();
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), message.attempt, trace));
        tokio::time::sleep(self.delay).await;
        if self.permanent {
            return Err(HandlerError::Permanent("cannot ever work".into()));
        }
        if message.attempt <= self.transient_failures {
            return Err(HandlerError::Transient(format!(
                "try {} failed",
                message.attempt
            )));
        }
        Ok(())
    }
}

fn spec() -> ConsumerSpec {
    ConsumerSpec::new(QUEUE)
        .bind("events", AccountEnabled::TYPE)
        .retry_delays(vec![Duration::from_millis(100), Duration::from_millis(300)])
}

fn start<H: Handler>(bus: &TestBus, handler: Arc<H>) -> (Shutdown, JoinHandle<()>) {
    platform::telemetry::init_for_tests("bus-tests");
    bus.track_consumer(&spec());
    let broker = Broker::new(bus.url(), bus.names().clone(), "bus-test");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(bus::consumer::run(
        broker,
        spec(),
        handler,
        shutdown.clone(),
    ));
    (shutdown, task)
}

async fn wait_for_calls(handler: &Scripted, count: usize) {
    let done = testkit::eventually(Duration::from_secs(10), || async {
        (handler.calls.lock().unwrap().len() >= count).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "handler was called {} times",
        handler.calls.lock().unwrap().len()
    );
}

async fn publish(bus: &TestBus) -> Envelope<AccountEnabled> {
    let envelope = Envelope::new(AccountEnabled {
        user_id: Uuid::new_v4(),
        revision: 1,
    });
    // Give the consumer time to declare and bind its queue first.
    let declared = testkit::eventually(Duration::from_secs(10), || async {
        let connection = bus.connect().await.ok()?;
        let channel = connection.create_channel().await.ok()?;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        channel
            .queue_declare(&bus.names().physical(QUEUE), passive, Default::default())
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(declared.is_some());
    bus.publish(&envelope).await.unwrap();
    envelope
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_then_succeed() {
    let bus = TestBus::new();
    let handler = Arc::new(Scripted {
        transient_failures: 2,
        ..Default::default()
    });
    let (shutdown, task) = start(&bus, handler.clone());
    publish(&bus).await;
    wait_for_calls(&handler, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let calls = handler.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(
        calls[1].0 - calls[0].0 >= Duration::from_millis(100),
        "first retry waits its delay"
    );
    assert!(
        calls[2].0 - calls[1].0 >= Duration::from_millis(300),
        "second retry waits longer"
    );
    assert!(bus
        .take(&format!("{QUEUE}.dead"), Duration::from_millis(200))
        .await
        .is_none());
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn the_last_failure_parks_the_message_with_its_error() {
    let bus = TestBus::new();
    let handler = Arc::new(Scripted {
        transient_failures: u32::MAX,
        ..Default::default()
    });
    let (shutdown, task) = start(&bus, handler.clone());
    let envelope = publish(&bus).await;

    let dead = bus
        .take(&format!("{QUEUE}.dead"), Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert_eq!(dead.message_id, envelope.id.to_string());
    assert_eq!(
        dead.headers.0.get("x-error").map(String::as_str),
        Some("try 3 failed")
    );
    assert_eq!(dead.int_header("x-attempt"), Some(3));
    assert_eq!(
        dead.json()["data"]["user_id"],
        envelope.data.user_id.to_string()
    );
    assert_eq!(handler.calls.lock().unwrap().len(), 3);
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn permanent_failures_and_poison_go_to_dead_at_once() {
    let bus = TestBus::new();
    let handler = Arc::new(Scripted {
        permanent: true,
        ..Default::default()
    });
    let (shutdown, task) = start(&bus, handler.clone());
    publish(&bus).await;
    let dead = bus
        .take(&format!("{QUEUE}.dead"), Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert_eq!(
        dead.headers.0.get("x-error").map(String::as_str),
        Some("cannot ever work")
    );
    assert_eq!(handler.calls.lock().unwrap().len(), 1);

    bus.publish_raw("events", AccountEnabled::TYPE, "", "x", b"{}".to_vec())
        .await
        .unwrap();
    let anonymous = bus
        .take(&format!("{QUEUE}.dead"), Duration::from_secs(10))
        .await
        .expect("dead letter");
    assert!(anonymous.headers.0["x-error"].contains("message_id"));
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn trace_context_travels_from_publisher_to_handler() {
    let bus = TestBus::new();
    let handler = Arc::new(Scripted::default());
    let (shutdown, task) = start(&bus, handler.clone());
    publish(&bus).await; // declares and binds
    wait_for_calls(&handler, 1).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let connection = bus.connect().await.unwrap();
    let publisher = bus::Publisher::open(&connection).await.unwrap();
    let mut headers = bus::headers::StringHeaders::default();
    headers.0.insert(
        "traceparent".into(),
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    );
    publisher
        .publish(&bus::publisher::OutgoingMessage {
            exchange: bus.names().physical("events"),
            routing_key: AccountEnabled::TYPE.into(),
            message_id: Uuid::new_v4().to_string(),
            message_type: AccountEnabled::TYPE.into(),
            payload: serde_json::to_vec(&Envelope::new(AccountEnabled {
                user_id: Uuid::new_v4(),
                revision: 1,
            }))
            .unwrap(),
            headers: headers.into_table(),
            mandatory: false,
        })
        .await
        .unwrap();
    wait_for_calls(&handler, 2).await;
    assert_eq!(
        handler.calls.lock().unwrap()[1].2.as_deref(),
        Some(trace_id)
    );
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_work_finish_and_acks_it() {
    let bus = TestBus::new();
    let handler = Arc::new(Scripted {
        delay: Duration::from_millis(500),
        ..Default::default()
    });
    let (shutdown, task) = start(&bus, handler.clone());
    publish(&bus).await;
    wait_for_calls(&handler, 1).await;
    shutdown.trigger();
    task.await.unwrap();
    // Had it not been acked, the broker would hold it for redelivery.
    assert!(bus.take(QUEUE, Duration::from_millis(300)).await.is_none());
    assert_eq!(handler.calls.lock().unwrap().len(), 1);
}

fn bus_database() -> TestDatabase {
    TestDatabase::create(
        "bus",
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sql")),
        |conn| {
            conn.batch_execute(bus::outbox::MIGRATION_SQL)?;
            Ok(())
        },
    )
    .unwrap()
}

/// Applies each message once, recording it in the inbox in the same transaction.
struct Counting {
    pool: platform::db::PgPool,
}

impl Handler for Counting {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let pool = self.pool.clone();
        platform::db::run(&pool, move |conn| {
            conn.transaction(|conn| {
                if bus::inbox::first_delivery(conn, "counting", &message.message_id)? {
                    diesel::sql_query("INSERT INTO effects VALUES (1)").execute(conn)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(platform::db::DbError::from)
        })
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

#[tokio::test]
async fn a_redelivered_message_has_its_effect_once() {
    let db = bus_database();
    db.connect()
        .unwrap()
        .batch_execute("CREATE TABLE effects (n INT)")
        .unwrap();
    let bus = TestBus::new();
    let pool = platform::db::pool(db.url(), 2);
    let (shutdown, task) = start(&bus, Arc::new(Counting { pool }));
    let envelope = publish(&bus).await;
    bus.publish(&envelope).await.unwrap();
    bus.publish(&envelope).await.unwrap();
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |sql: &str| {
        diesel::sql_query(sql)
            .get_result::<N>(&mut db.connect().unwrap())
            .unwrap()
            .n
    };
    let seen = testkit::eventually(Duration::from_secs(10), || async {
        (count("SELECT count(*) AS n FROM processed_messages") == 1).then_some(())
    })
    .await;
    assert!(seen.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count("SELECT count(*) AS n FROM effects"), 1);
    shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn the_relay_publishes_committed_rows_in_order_and_nothing_rolled_back() {
    let db = bus_database();
    let bus = TestBus::new();
    let mut probe = bus.probe("events", AccountEnabled::TYPE).await.unwrap();
    let mut conn = db.connect().unwrap();
    let users: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (revision, user_id) in users.iter().enumerate() {
        conn.transaction(|conn| {
            bus::outbox::enqueue(
                conn,
                AccountEnabled {
                    user_id: *user_id,
                    revision: revision as i64,
                },
            )
        })
        .unwrap();
    }
    let rolled_back: Result<(), diesel::result::Error> = conn.transaction(|conn| {
        bus::outbox::enqueue(
            conn,
            AccountEnabled {
                user_id: Uuid::nil(),
                revision: 99,
            },
        )?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());

    let broker = Broker::new(bus.url(), bus.names().clone(), "relay-test");
    let relay = OutboxRelay::new(
        platform::db::pool(db.url(), 2),
        broker,
        bus::Topology::new(),
    );
    let shutdown = Shutdown::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    for user_id in &users {
        let message = probe
            .next(Duration::from_secs(10))
            .await
            .expect("published");
        assert_eq!(message.json()["data"]["user_id"], user_id.to_string());
    }
    assert!(
        probe.next(Duration::from_millis(700)).await.is_none(),
        "the rolled-back row never existed"
    );
    assert_eq!(bus::outbox::pending_count(&mut conn).unwrap(), 0);
    shutdown.trigger();
    task.await.unwrap();
}

/// Declares and binds the consumer's queue and fills it before any consumer
/// runs, so the consumer starts with a backlog.
async fn queue_backlog(bus: &TestBus, spec: &ConsumerSpec, revisions: &[i64]) -> Vec<Uuid> {
    bus.track_consumer(spec);
    let connection = bus.connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    bus::Topology::new()
        .consumer(spec)
        .declare(&channel, bus.names())
        .await
        .unwrap();
    let _ = connection.close(200, "done").await;
    let mut ids = Vec::new();
    for revision in revisions {
        let envelope = Envelope::new(AccountEnabled {
            user_id: Uuid::new_v4(),
            revision: *revision,
        });
        bus.publish(&envelope).await.unwrap();
        ids.push(envelope.id);
    }
    ids
}

fn batch_spec() -> ConsumerSpec {
    spec().prefetch(64).batch(8).concurrency(1)
}

/// Records the size of every call; a revision of 7 can never be handled.
#[derive(Default)]
struct Batches {
    sizes: Mutex<Vec<usize>>,
    handled: Mutex<Vec<i64>>,
}

impl Handler for Batches {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        self.handle_batch(vec![message]).await.remove(0)
    }

    async fn handle_batch(&self, messages: Vec<Incoming>) -> Vec<Result<(), HandlerError>> {
        self.sizes.lock().unwrap().push(messages.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        messages
            .iter()
            .map(|message| {
                let revision = message.envelope::<AccountEnabled>()?.data.revision;
                if revision == 7 {
                    return Err(HandlerError::Permanent("seven".into()));
                }
                self.handled.lock().unwrap().push(revision);
                Ok(())
            })
            .collect()
    }
}

#[tokio::test]
async fn a_backlog_is_handled_in_batches_and_each_message_settled_by_its_result() {
    platform::telemetry::init_for_tests("bus-tests");
    let bus = TestBus::new();
    let spec = batch_spec();
    let revisions: Vec<i64> = (0..20).collect();
    queue_backlog(&bus, &spec, &revisions).await;
    let handler = Arc::new(Batches::default());
    let shutdown = Shutdown::new();
    let broker = Broker::new(bus.url(), bus.names().clone(), "bus-test");
    let task = tokio::spawn(bus::consumer::run(
        broker,
        spec,
        handler.clone(),
        shutdown.clone(),
    ));

    let dead = bus
        .take(&format!("{QUEUE}.dead"), Duration::from_secs(10))
        .await
        .expect("the failing message is dead-lettered");
    assert_eq!(dead.json()["data"]["revision"], 7);
    let done = testkit::eventually(Duration::from_secs(10), || async {
        (handler.handled.lock().unwrap().len() == 19).then_some(())
    })
    .await;
    assert!(done.is_some());
    shutdown.trigger();
    task.await.unwrap();

    let sizes = handler.sizes.lock().unwrap().clone();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        20,
        "each message once: {sizes:?}"
    );
    assert!(sizes.iter().all(|&size| size <= 8), "{sizes:?}");
    assert!(sizes.len() < 20, "waiting messages were batched: {sizes:?}");
    let mut handled = handler.handled.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, (0..20).filter(|&r| r != 7).collect::<Vec<_>>());
    // Everything else was acked: nothing is left for redelivery.
    assert_eq!(bus.count(QUEUE).await, 0);
    assert!(bus.take(QUEUE, Duration::from_millis(300)).await.is_none());
}

/// Writes each event's revision; the table refuses 13.
struct Effects;

impl bus::inbox::Transactional for Effects {
    type Change = AccountEnabled;

    fn parse(&self, message: &Incoming) -> Result<AccountEnabled, HandlerError> {
        Ok(message.envelope::<AccountEnabled>()?.data)
    }

    fn apply(conn: &mut PgConnection, change: &AccountEnabled) -> QueryResult<()> {
        diesel::sql_query("INSERT INTO effects VALUES ($1)")
            .bind::<diesel::sql_types::BigInt, _>(change.revision)
            .execute(conn)
            .map(drop)
    }
}

#[tokio::test]
async fn inboxed_batches_apply_each_message_once_and_isolate_a_failing_one() {
    platform::telemetry::init_for_tests("bus-tests");
    let db = bus_database();
    db.connect()
        .unwrap()
        .batch_execute("CREATE TABLE effects (n BIGINT NOT NULL CHECK (n <> 13))")
        .unwrap();
    let bus = TestBus::new();
    let spec = batch_spec();
    let revisions: Vec<i64> = (0..20).collect();
    let ids = queue_backlog(&bus, &spec, &revisions).await;
    // A duplicate of the fourth message, delivered in the same backlog.
    let duplicate = Envelope {
        id: ids[3],
        ..Envelope::new(AccountEnabled {
            user_id: Uuid::new_v4(),
            revision: 3,
        })
    };
    bus.publish(&duplicate).await.unwrap();

    let pool = platform::db::pool(db.url(), 2);
    let handler = Arc::new(bus::inbox::Inboxed::new(pool, "effects", Effects));
    let shutdown = Shutdown::new();
    let broker = Broker::new(bus.url(), bus.names().clone(), "bus-test");
    let task = tokio::spawn(bus::consumer::run(broker, spec, handler, shutdown.clone()));

    // 13 fails every time (a transient database error): retried, then parked.
    let dead = bus
        .take(&format!("{QUEUE}.dead"), Duration::from_secs(10))
        .await
        .expect("the failing message is dead-lettered");
    assert_eq!(dead.json()["data"]["revision"], 13);
    assert_eq!(dead.int_header("x-attempt"), Some(3));
    shutdown.trigger();
    task.await.unwrap();

    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().unwrap();
    let mut effects: Vec<i64> = diesel::sql_query("SELECT n FROM effects")
        .load::<N>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|row| row.n)
        .collect();
    effects.sort();
    assert_eq!(effects, (0..20).filter(|&r| r != 13).collect::<Vec<_>>());
    let recorded: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM processed_messages")
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        recorded[0].n, 19,
        "the failed message is not marked as handled"
    );
    // Rows of one transaction share its timestamp: messages were applied
    // together (the batch holding 13 was redone one message at a time).
    let transactions: Vec<N> =
        diesel::sql_query("SELECT count(DISTINCT processed_at) AS n FROM processed_messages")
            .load(&mut conn)
            .unwrap();
    assert!(transactions[0].n < 19, "{} transactions", transactions[0].n);
}

#[tokio::test]
async fn two_relays_side_by_side_publish_each_row_once_in_batches() {
    let db = bus_database();
    let bus = TestBus::new();
    let mut probe = bus.probe("events", AccountEnabled::TYPE).await.unwrap();
    let mut conn = db.connect().unwrap();
    // More than one batch of 200, so both relays have several in flight.
    let total = 1000;
    for revision in 0..total {
        conn.transaction(|conn| {
            bus::outbox::enqueue(
                conn,
                AccountEnabled {
                    user_id: Uuid::new_v4(),
                    revision,
                },
            )
        })
        .unwrap();
    }
    let shutdown = Shutdown::new();
    let relays: Vec<_> = (0..2)
        .map(|n| {
            let broker = Broker::new(bus.url(), bus.names().clone(), format!("relay-{n}"));
            let relay = OutboxRelay::new(
                platform::db::pool(db.url(), 4),
                broker,
                bus::Topology::new(),
            );
            tokio::spawn(relay.run(shutdown.clone()))
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(message) = probe.next(Duration::from_secs(5)).await {
        assert!(
            seen.insert(message.message_id.clone()),
            "{} published twice",
            message.message_id
        );
        if seen.len() == total as usize {
            break;
        }
    }
    assert_eq!(seen.len(), total as usize);
    assert!(probe.next(Duration::from_millis(500)).await.is_none());
    assert_eq!(bus::outbox::pending_count(&mut conn).unwrap(), 0);
    shutdown.trigger();
    for relay in relays {
        relay.await.unwrap();
    }
}
