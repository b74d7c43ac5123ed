//! AMQP names of a test's own: a prefix that no other test uses, and the
//! deletion of what the test declared under it when it ends.

use bus::topology::{Names, EVENTS, JOBS, JOB_QUEUES};

pub struct TestBus {
    names: Names,
    queues: std::sync::Mutex<Vec<String>>,
}

impl Default for TestBus {
    fn default() -> Self {
        Self::new()
    }
}

impl TestBus {
    pub fn new() -> Self {
        let prefix = format!("t.{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let bus = Self {
            names: Names::new(prefix),
            queues: std::sync::Mutex::new(Vec::new()),
        };
        for queue in JOB_QUEUES {
            bus.track_queue(queue);
            bus.track_queue(&format!("{queue}.dead"));
        }
        bus
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

    /// Registers a consumer's queue with its dead and delay queues.
    pub fn track_consumer(&self, spec: &bus::ConsumerSpec) {
        self.track_queue(&spec.queue);
        self.track_queue(&format!("{}.dead", spec.queue));
        for delay in &spec.retry_delays {
            self.track_queue(&format!("{}.retry.{}ms", spec.queue, delay.as_millis().max(1)));
        }
    }

    pub async fn connect(&self) -> lapin::Result<lapin::Connection> {
        bus::Broker::new(self.url(), self.names.clone(), "testkit").connect().await
    }

    async fn delete_all(url: String, names: Names, queues: Vec<String>) -> lapin::Result<()> {
        let connection = bus::Broker::new(url, names.clone(), "testkit-cleanup").connect().await?;
        for queue in queues {
            let channel = connection.create_channel().await?;
            let _ = channel
                .queue_delete(&queue, lapin::options::QueueDeleteOptions::default())
                .await;
        }
        for exchange in [EVENTS, JOBS] {
            let channel = connection.create_channel().await?;
            let _ = channel
                .exchange_delete(&names.physical(exchange), lapin::options::ExchangeDeleteOptions::default())
                .await;
        }
        let _ = connection.close(200, "test done").await;
        Ok(())
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let names = self.names.clone();
        let url = self.url();
        // Drop cannot await; clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = runtime.block_on(Self::delete_all(url, names, queues));
            }
        });
        let _ = cleanup.join();
    }
}
