//! AMQP names of a test's own: a prefix that no other test uses, and the
//! deletion of what the test declared under it when it ends.

use bus::topology::{Names, Topology, EVENTS, JOBS};

pub struct TestBus {
    names: Names,
    queues: std::sync::Mutex<Vec<String>>,
    exchanges: std::sync::Mutex<Vec<String>>,
}

impl Default for TestBus {
    fn default() -> Self {
        Self::new()
    }
}

impl TestBus {
    pub fn new() -> Self {
        let prefix = format!("t.{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            names: Names::new(prefix),
            queues: std::sync::Mutex::new(Vec::new()),
            exchanges: std::sync::Mutex::new(vec![EVENTS.to_string(), JOBS.to_string()]),
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn prefix(&self) -> &str {
        self.names.prefix()
    }

    pub fn url(&self) -> String {
        crate::amqp_url()
    }

    /// Registers a logical queue name to delete at the end of the test.
    pub fn track_queue(&self, logical: &str) {
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(self.names.physical(logical));
        }
    }

    /// Registers what a service's topology declares: its queues (with
    /// their dead and delay queues) and its exchanges.
    pub fn track_topology(&self, topology: &Topology) {
        for queue in topology.queues() {
            self.track_queue(&queue.name);
            if let Some(delays) = &queue.retries_ms {
                self.track_queue(&format!("{}.dead", queue.name));
                for delay in delays {
                    self.track_queue(&format!("{}.retry.{delay}ms", queue.name));
                }
            }
        }
        if let Ok(mut exchanges) = self.exchanges.lock() {
            exchanges.extend(topology.exchanges().iter().map(|e| e.name.clone()));
        }
    }

    /// Registers a consumer's queue with its dead and delay queues.
    pub fn track_consumer(&self, spec: &bus::ConsumerSpec) {
        self.track_queue(&spec.queue);
        self.track_queue(&format!("{}.dead", spec.queue));
        for delay in &spec.retry_delays {
            self.track_queue(&format!(
                "{}.retry.{}ms",
                spec.queue,
                delay.as_millis().max(1)
            ));
        }
    }

    pub async fn connect(&self) -> lapin::Result<lapin::Connection> {
        bus::Broker::new(self.url(), self.names.clone(), "testkit")
            .connect()
            .await
    }
}

/// Deletes `queues` (physical names) and `exchanges` (logical) under
/// `names`' prefix: what a test, or a bench run, declared.
pub async fn delete_all(
    url: String,
    names: Names,
    queues: Vec<String>,
    exchanges: Vec<String>,
) -> lapin::Result<()> {
    let connection = bus::Broker::new(url, names.clone(), "testkit-cleanup")
        .connect()
        .await?;
    for queue in queues {
        let channel = connection.create_channel().await?;
        if let Err(err) = channel
            .queue_delete(&queue, lapin::options::QueueDeleteOptions::default())
            .await
        {
            eprintln!("testkit: delete {queue}: {err}");
        }
    }
    for exchange in exchanges {
        let channel = connection.create_channel().await?;
        let _ = channel
            .exchange_delete(
                &names.physical(&exchange),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = connection.close(200, "test done").await;
    Ok(())
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let exchanges = self.exchanges.lock().map(|e| e.clone()).unwrap_or_default();
        let names = self.names.clone();
        let url = self.url();
        // Drop cannot await; clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                if let Err(err) = runtime.block_on(delete_all(url, names, queues, exchanges)) {
                    eprintln!("testkit: could not delete the test's AMQP names: {err}");
                }
            }
        });
        let _ = cleanup.join();
    }
}

/// A message as a test receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub message_type: String,
    pub headers: bus::headers::StringHeaders,
    pub raw_headers: lapin::types::FieldTable,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn from_parts(properties: &lapin::BasicProperties, body: Vec<u8>) -> Self {
        let raw_headers = properties.headers().clone().unwrap_or_default();
        Self {
            message_id: properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            message_type: properties
                .kind()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            headers: bus::headers::StringHeaders::from_table(Some(&raw_headers)),
            raw_headers,
            body,
        }
    }

    /// An integer header (such as `x-attempt`).
    pub fn int_header(&self, name: &str) -> Option<i64> {
        self.raw_headers
            .inner()
            .get(name)
            .and_then(bus::headers::as_int)
    }
}

/// A private queue bound to an exchange, to observe what is published.
pub struct Probe {
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl Probe {
    pub async fn next(&mut self, timeout: std::time::Duration) -> Option<Received> {
        use futures_util::StreamExt;
        let delivery = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .ok()?;
        Some(Received::from_parts(&delivery.properties, delivery.data))
    }
}

impl TestBus {
    /// Observes messages published to a logical exchange with `routing_key`.
    pub async fn probe(&self, exchange: &str, routing_key: &str) -> lapin::Result<Probe> {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        Topology::new().declare(&channel, &self.names).await?;
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str(),
                &self.names.physical(exchange),
                routing_key,
                QueueBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "probe",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        Ok(Probe {
            _connection: connection,
            consumer,
        })
    }

    /// Takes one message from a logical queue, waiting up to `timeout`.
    pub async fn take(&self, queue: &str, timeout: std::time::Duration) -> Option<Received> {
        let connection = self.connect().await.ok()?;
        let channel = connection.create_channel().await.ok()?;
        let physical = self.names.physical(queue);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = channel
                .basic_get(&physical, lapin::options::BasicGetOptions { no_ack: true })
                .await;
            if let Ok(Some(message)) = got {
                let delivery = message.delivery;
                let _ = connection.close(200, "done").await;
                return Some(Received::from_parts(&delivery.properties, delivery.data));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = connection.close(200, "done").await;
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Publishes an envelope as a service would, with a chosen message id.
    pub async fn publish<T: domain::messages::Contract>(
        &self,
        envelope: &domain::messages::Envelope<T>,
    ) -> anyhow::Result<()> {
        self.publish_raw(
            bus::topology::EVENTS,
            T::TYPE,
            &envelope.id.to_string(),
            T::TYPE,
            serde_json::to_vec(envelope)?,
        )
        .await
    }

    /// Publishes arbitrary bytes (for malformed-message tests).
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        message_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<()> {
        let connection = self.connect().await?;
        let publisher = bus::Publisher::open(&connection).await?;
        // A job waits in its queue for its worker, as a sending service's
        // topology makes sure it does.
        let topology = if exchange == JOBS {
            Topology::new().job_queue(routing_key)
        } else {
            Topology::new()
        };
        self.track_topology(&topology);
        topology.declare(publisher.channel(), &self.names).await?;
        publisher
            .publish(&bus::publisher::OutgoingMessage {
                exchange: self.names.physical(exchange),
                routing_key: routing_key.to_string(),
                message_id: message_id.to_string(),
                message_type: message_type.to_string(),
                payload: body,
                headers: lapin::types::FieldTable::default(),
                mandatory: false,
            })
            .await?;
        let _ = connection.close(200, "done").await;
        Ok(())
    }
}

impl TestBus {
    /// Whether a queue exists, by its broker name. Another connection's
    /// exclusive queue answers "locked", which means it exists.
    pub async fn queue_exists(&self, physical: &str) -> bool {
        let Ok(connection) = self.connect().await else {
            return false;
        };
        let Ok(channel) = connection.create_channel().await else {
            return false;
        };
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let exists = match channel
            .queue_declare(physical, passive, lapin::types::FieldTable::default())
            .await
        {
            Ok(_) => true,
            // 405 RESOURCE_LOCKED: exclusive to another connection.
            Err(lapin::Error::ProtocolError(err)) => err.get_id() == 405,
            Err(_) => false,
        };
        let _ = connection.close(200, "done").await;
        exists
    }

    /// Messages ready in a logical queue (0 if it does not exist).
    pub async fn count(&self, queue: &str) -> u32 {
        let Ok(connection) = self.connect().await else {
            return 0;
        };
        let Ok(channel) = connection.create_channel().await else {
            return 0;
        };
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let count = channel
            .queue_declare(
                &self.names.physical(queue),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(0);
        let _ = connection.close(200, "done").await;
        count
    }
}
