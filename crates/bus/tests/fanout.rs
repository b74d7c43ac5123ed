//! Fan-out through per-replica queues (what chat's `chat.live` needs),
//! against a real RabbitMQ: every replica gets every message, a replica's
//! queue goes with it, and a replica that lost the broker declares its
//! queue and bindings again when it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bus::{Broker, ConsumerSpec, Handler, HandlerError, Incoming, Topology};
use lapin::ExchangeKind;
use platform::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{TcpProxy, TestBus};
use tokio::task::JoinHandle;

const EXCHANGE: &str = "live";

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Handler for Recorder {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(message.message_id);
        Ok(())
    }
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn spec(replica: &str) -> ConsumerSpec {
    ConsumerSpec::per_replica("live.fanout", replica)
        .exchange(EXCHANGE, ExchangeKind::Topic)
        .bind(EXCHANGE, "room.*")
}

struct Replica {
    recorder: Arc<Recorder>,
    shutdown: Shutdown,
    task: JoinHandle<()>,
    queue: String,
}

fn start(bus: &TestBus, replica: &str, amqp_url: String) -> Replica {
    let spec = spec(replica);
    let queue = spec.physical_queue(bus.names());
    let broker = Broker::new(amqp_url, bus.names().clone(), "fanout-test");
    let recorder = Arc::new(Recorder::default());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(bus::consumer::run(
        broker,
        spec,
        recorder.clone(),
        shutdown.clone(),
    ));
    Replica {
        recorder,
        shutdown,
        task,
        queue,
    }
}

async fn wait_for_queue(bus: &TestBus, queue: &str) {
    let declared = testkit::eventually(Duration::from_secs(10), || async {
        bus.queue_exists(queue).await.then_some(())
    })
    .await;
    assert!(declared.is_some(), "{queue} was never declared");
}

async fn publish(bus: &TestBus, id: &str, room: u32) {
    bus.publish_raw(
        EXCHANGE,
        &format!("room.{room}"),
        id,
        "chat.message",
        b"{}".to_vec(),
    )
    .await
    .unwrap();
}

async fn wait_until_seen(replica: &Replica, count: usize) -> Vec<String> {
    testkit::eventually(Duration::from_secs(10), || async {
        let seen = replica.recorder.seen();
        (seen.len() >= count).then_some(seen)
    })
    .await
    .unwrap_or_else(|| replica.recorder.seen())
}

fn new_bus() -> TestBus {
    platform::telemetry::init_for_tests("bus-fanout");
    let bus = TestBus::new();
    bus.track_topology(&Topology::new().exchange(EXCHANGE, ExchangeKind::Topic));
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_gets_every_message_and_its_queue_goes_with_it() {
    let bus = new_bus();
    let a = start(&bus, "a", bus.url());
    let b = start(&bus, "b", bus.url());
    assert_ne!(a.queue, b.queue);
    wait_for_queue(&bus, &a.queue).await;
    wait_for_queue(&bus, &b.queue).await;

    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for (room, id) in ids.iter().enumerate() {
        publish(&bus, id, room as u32).await;
    }
    for replica in [&a, &b] {
        let mut seen = wait_until_seen(replica, ids.len()).await;
        seen.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(seen, expected, "{} missed messages", replica.queue);
    }

    a.shutdown.trigger();
    a.task.await.unwrap();
    let gone = testkit::eventually(Duration::from_secs(5), || async {
        (!bus.queue_exists(&a.queue).await).then_some(())
    })
    .await;
    assert!(gone.is_some(), "{} outlived its replica", a.queue);
    assert!(
        bus.queue_exists(&b.queue).await,
        "the other replica's queue went too"
    );
    b.shutdown.trigger();
    b.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_the_broker_declares_its_queue_again() {
    let bus = new_bus();
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let replica = start(&bus, "r", url);
    wait_for_queue(&bus, &replica.queue).await;
    publish(&bus, "before", 1).await;
    assert_eq!(wait_until_seen(&replica, 1).await, ["before"]);

    proxy.cut();
    // The broker drops an exclusive queue with its connection.
    let gone = testkit::eventually(Duration::from_secs(10), || async {
        (!bus.queue_exists(&replica.queue).await).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the queue outlived the connection");
    proxy.restore();

    wait_for_queue(&bus, &replica.queue).await;
    publish(&bus, "after", 2).await;
    assert_eq!(wait_until_seen(&replica, 2).await, ["before", "after"]);
    replica.shutdown.trigger();
    replica.task.await.unwrap();
}
