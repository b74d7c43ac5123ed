use super::templates::{self, template_name};
use super::transport::Transport;
use crate::store::sent_emails::{self, Claim};
use bus::{ConsumerSpec, Handler, HandlerError, Incoming};
use domain::messages::{Contract, EmailJob};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use platform::db::{self, DbError, PgPool};
use std::sync::Arc;
use std::time::Duration;

pub const QUEUE: &str = "email";

/// Jobs by template and outcome: `sent`, `duplicate`, `retry`, `failed`.
#[derive(Clone)]
pub struct EmailMetrics(prometheus::IntCounterVec);

impl EmailMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("email_jobs_total", "Email jobs by template and outcome"),
            &["template", "outcome"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(Self(counter))
    }

    fn count(&self, template: &str, outcome: &str) {
        self.0.with_label_values(&[template, outcome]).inc();
    }
}

pub struct EmailHandler {
    pub pool: PgPool,
    pub transport: Arc<Transport>,
    pub from: Mailbox,
    pub base_url: String,
    pub metrics: EmailMetrics,
    /// How long a started send counts as in progress rather than abandoned.
    pub send_lease: Duration,
}

impl EmailHandler {
    pub fn spec(retry_delays: Vec<Duration>, prefetch: u16, concurrency: usize) -> ConsumerSpec {
        ConsumerSpec::new(QUEUE)
            .bind(bus::topology::JOBS, QUEUE)
            .prefetch(prefetch)
            .concurrency(concurrency)
            .retry_delays(retry_delays)
    }

    fn compose(&self, job: &EmailJob, message_id: &str) -> Result<Message, HandlerError> {
        let rendered = templates::render(job.template, &job.vars, &self.base_url)
            .map_err(|err| HandlerError::Permanent(err.to_string()))?;
        let to: Mailbox = job.to.parse().map_err(|err| {
            HandlerError::Permanent(format!("invalid recipient address `{}`: {err}", job.to))
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{message_id}@platform>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(rendered.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(rendered.html),
                    ),
            )
            .map_err(|err| HandlerError::Permanent(format!("cannot build the message: {err}")))
    }

    async fn record<F, T>(&self, work: F) -> Result<T, HandlerError>
    where
        F: FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        db::run(&self.pool, move |conn| work(conn).map_err(DbError::from))
            .await
            .map_err(|err: DbError| HandlerError::Transient(err.to_string()))
    }

    async fn send(&self, message: &Incoming) -> Result<&'static str, HandlerError> {
        let envelope = message.envelope::<EmailJob>()?;
        bus::consumer::require_version(envelope.version, EmailJob::VERSION)?;
        let job = envelope.data;
        if job.idempotency_key.trim().is_empty() {
            return Err(HandlerError::Permanent(
                "the job has no idempotency_key".into(),
            ));
        }
        let email = self.compose(&job, &message.message_id)?;
        let template = template_name(job.template);

        let key = job.idempotency_key.clone();
        let (message_id, recipient, lease) =
            (message.message_id.clone(), job.to.clone(), self.send_lease);
        let claim = self
            .record(move |conn| {
                sent_emails::claim(conn, &key, &message_id, template, &recipient, lease)
            })
            .await?;
        match claim {
            Claim::AlreadySent => return Ok("duplicate"),
            Claim::InProgress => {
                return Err(HandlerError::Transient(
                    "another delivery of this email is being sent right now".into(),
                ))
            }
            Claim::Unknown if !message.requeued => {
                return Err(HandlerError::Permanent(
                    "delivery outcome unknown: the worker stopped while sending; \
                     requeue from email.dead to send it anyway"
                        .into(),
                ))
            }
            Claim::Unknown => {
                let key = job.idempotency_key.clone();
                self.record(move |conn| sent_emails::restart(conn, &key))
                    .await?;
            }
            Claim::Fresh => {}
        }

        let key = job.idempotency_key.clone();
        match self.transport.send(email).await {
            Ok(()) => {
                self.record(move |conn| sent_emails::mark_sent(conn, &key))
                    .await?;
                Ok("sent")
            }
            Err(failure) => {
                // The server did not take it: forget the claim so a retry sends.
                self.record(move |conn| sent_emails::release(conn, &key))
                    .await?;
                if failure.permanent {
                    Err(HandlerError::Permanent(failure.reason))
                } else {
                    Err(HandlerError::Transient(failure.reason))
                }
            }
        }
    }
}

impl Handler for EmailHandler {
    async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let template = message
            .envelope::<EmailJob>()
            .map(|e| template_name(e.data.template))
            .unwrap_or("unknown");
        let outcome = self.send(&message).await;
        let label = match &outcome {
            Ok(label) => label,
            Err(HandlerError::Transient(_)) => "retry",
            Err(HandlerError::Permanent(_)) => "failed",
        };
        self.metrics.count(template, label);
        if let Err(err) = &outcome {
            tracing::warn!(template, error = %err, "email not sent");
        }
        outcome.map(|_| ())
    }
}
