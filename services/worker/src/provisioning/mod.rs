//! The `provisioning` queue: the scheduler's launch and terminate jobs,
//! done through a [`provider::Provider`] and answered with events
//! (`instance.launch_failed`, `instance.terminated`) through the outbox.
//! Each request is done once: `provisioning_done` remembers it, so a job
//! delivered again repeats nothing.

pub mod process;
pub mod provider;

use crate::store::launched;
use bus::{ConsumerSpec, Handler, HandlerError, Incoming, RelayHandle};
use domain::messages::{Contract, ProvisioningAction, ProvisioningJob};
use platform::db::{self, DbError, PgPool};
use provider::{LaunchSpec, Provider, ProviderError, Termination};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub const QUEUE: &str = "provisioning";

/// Jobs by action and outcome.
#[derive(Clone)]
pub struct ProvisioningMetrics(prometheus::IntCounterVec);

impl ProvisioningMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "provisioning_jobs_total",
                "Provisioning jobs by action and outcome",
            ),
            &["action", "outcome"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(Self(counter))
    }

    fn count(&self, action: &str, outcome: &str) {
        self.0.with_label_values(&[action, outcome]).inc();
    }
}

pub struct ProvisioningHandler {
    pub pool: PgPool,
    pub provider: Arc<dyn Provider>,
    pub relay: RelayHandle,
    pub metrics: ProvisioningMetrics,
}

impl ProvisioningHandler {
    /// One job at a time: launches pick ports one after another.
    pub fn spec(retry_delays: Vec<Duration>) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::JOBS, QUEUE)
            .retry_delays(retry_delays)
            .prefetch(4)
            .concurrency(1)
    }

    async fn done(&self, request_id: Uuid) -> Result<bool, HandlerError> {
        db::read(&self.pool, move |conn| launched::is_done(conn, request_id))
            .await
            .map_err(|err| HandlerError::Transient(err.to_string()))
    }

    async fn write(
        &self,
        work: impl FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<()> + Send + 'static,
    ) -> Result<(), HandlerError> {
        db::run(&self.pool, move |conn| work(conn).map_err(DbError::from))
            .await
            .map_err(|err| HandlerError::Transient(err.to_string()))?;
        self.relay.wake();
        Ok(())
    }

    async fn launch(&self, job: ProvisioningJob, instance_id: Uuid) -> Result<(), HandlerError> {
        let capacity = job
            .capacity
            .filter(|capacity| (1..=1000).contains(capacity))
            .ok_or_else(|| {
                HandlerError::Permanent("a launch needs a capacity of 1 to 1000".into())
            })?;
        let spec = LaunchSpec {
            request_id: job.request_id,
            instance_id,
            region: job.region.clone(),
            capacity,
        };
        match self.provider.launch(&spec).await {
            Ok(()) => {
                let request_id = job.request_id;
                self.write(move |conn| {
                    launched::record_done(conn, request_id, "launch", instance_id, "launched")
                        .map(|_| ())
                })
                .await?;
                self.metrics.count("launch", "launched");
                Ok(())
            }
            Err(ProviderError::Transient(reason)) => Err(HandlerError::Transient(reason)),
            Err(ProviderError::Failed(error)) => {
                tracing::warn!(instance = %instance_id, %error, "launch failed");
                let request_id = job.request_id;
                let region = job.region;
                self.write(move |conn| {
                    launched::launch_failed(conn, request_id, instance_id, &region, &error)
                })
                .await?;
                self.metrics.count("launch", "failed");
                Ok(())
            }
        }
    }

    async fn terminate(&self, job: ProvisioningJob, instance_id: Uuid) -> Result<(), HandlerError> {
        let reason = match self.provider.terminate(instance_id).await {
            Ok(Termination::Stopped) => "terminated".to_string(),
            Ok(Termination::NotRunning(why)) => why,
            Err(ProviderError::Transient(reason)) => return Err(HandlerError::Transient(reason)),
            Err(ProviderError::Failed(reason)) => return Err(HandlerError::Permanent(reason)),
        };
        let request_id = job.request_id;
        let region = job.region;
        self.metrics.count("terminate", "done");
        self.write(move |conn| {
            launched::gone(
                conn,
                instance_id,
                &region,
                Some(request_id),
                "terminated",
                &reason,
            )
        })
        .await
    }
}

impl Handler for ProvisioningHandler {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let envelope = message.envelope::<ProvisioningJob>()?;
        bus::consumer::require_version(envelope.version, ProvisioningJob::VERSION)?;
        let job = envelope.data;
        let instance_id = job.instance_id.ok_or_else(|| {
            HandlerError::Permanent("a provisioning job needs an instance_id".into())
        })?;
        if self.done(job.request_id).await? {
            self.metrics.count(action_name(job.action), "duplicate");
            return Ok(());
        }
        match job.action {
            ProvisioningAction::Launch => self.launch(job, instance_id).await,
            ProvisioningAction::Terminate => self.terminate(job, instance_id).await,
        }
    }
}

fn action_name(action: ProvisioningAction) -> &'static str {
    match action {
        ProvisioningAction::Launch => "launch",
        ProvisioningAction::Terminate => "terminate",
    }
}
