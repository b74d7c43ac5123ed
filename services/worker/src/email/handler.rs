use super::templates::{self, template_name};
use super::transport::Transport;
use crate::store::sent_emails::{self, Claim};
use bus::{ConsumerSpec, Handler, HandlerError, Incoming};
use domain::messages::{Contract, EmailJob};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use platform::db::{self, DbError, PgPool};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

pub const QUEUE: &str = "email";

/// Why a job that a crashed worker was sending is parked: said the same way
/// in `email.dead` and in the logs.
pub const OUTCOME_UNKNOWN: &str = "delivery outcome unknown: the worker that was sending this \
     email stopped during the SMTP transaction, so the server may or may not have taken it; \
     requeue it from email.dead to send it anyway";

/// Jobs by template and outcome: `sent`, `duplicate`, `retry`, `failed`,
/// `outcome_unknown`.
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
    /// The advisory lock this process holds while it lives; its claims
    /// carry it, so another worker can tell that they were abandoned.
    pub owner: i64,
    /// Idempotency keys this process is sending right now.
    pub sending: Mutex<HashSet<String>>,
}

/// Tries to record how a send ended (100 ms, doubling: about 3 s in all).
const OUTCOME_RECORD_ATTEMPTS: u32 = 5;

/// Why a job was not sent, and its label in `email_jobs_total`.
struct Failure {
    error: HandlerError,
    label: &'static str,
}

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Self {
        let label = match error {
            HandlerError::Transient(_) => "retry",
            HandlerError::Permanent(_) => "failed",
        };
        Self { error, label }
    }
}

/// Marks a key as being sent by this process until dropped.
struct Sending<'a> {
    keys: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(&self.key);
        }
    }
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

    /// Records how a send ended, once the server has answered. The
    /// outcome is known then, so a database that fails here is tried again
    /// for a while (100 ms, doubling, about 3 s in all); if it never
    /// answers, the failure is logged and the job settled by what the
    /// server said: a later duplicate of a sent job is parked as outcome
    /// unknown rather than sent again.
    async fn record_outcome<F>(&self, what: &'static str, work: F)
    where
        F: Fn(&mut diesel::PgConnection) -> diesel::QueryResult<usize> + Clone + Send + 'static,
    {
        let mut delay = std::time::Duration::from_millis(100);
        for attempt in 1..=OUTCOME_RECORD_ATTEMPTS {
            match self.record(work.clone()).await {
                Ok(_) => return,
                Err(err) if attempt == OUTCOME_RECORD_ATTEMPTS => {
                    tracing::error!(error = %err, "could not record that the email was {what}");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// `Some` unless this process is already sending `key`.
    fn start_sending(&self, key: &str) -> Option<Sending<'_>> {
        let mut keys = self.sending.lock().ok()?;
        keys.insert(key.to_string()).then(|| Sending {
            keys: &self.sending,
            key: key.to_string(),
        })
    }

    async fn send(&self, message: &Incoming) -> Result<&'static str, Failure> {
        let envelope = message.envelope::<EmailJob>()?;
        bus::consumer::require_version(envelope.version, EmailJob::VERSION)?;
        let job = envelope.data;
        if job.idempotency_key.trim().is_empty() {
            return Err(HandlerError::Permanent("the job has no idempotency_key".into()).into());
        }
        let email = self.compose(&job, &message.message_id)?;
        let template = template_name(job.template);
        let in_progress = || {
            HandlerError::Transient("another delivery of this email is being sent right now".into())
        };
        let Some(_sending) = self.start_sending(&job.idempotency_key) else {
            return Err(in_progress().into());
        };

        let (key, owner) = (job.idempotency_key.clone(), self.owner);
        let (message_id, recipient) = (message.message_id.clone(), job.to.clone());
        let claim = self
            .record(move |conn| {
                let job = sent_emails::Job {
                    key: &key,
                    message_id: &message_id,
                    template,
                    recipient: &recipient,
                };
                sent_emails::claim(conn, &job, owner)
            })
            .await?;
        match claim {
            Claim::AlreadySent => return Ok("duplicate"),
            Claim::InProgress => return Err(in_progress().into()),
            Claim::Unknown if !message.requeued => {
                tracing::error!(template, "{OUTCOME_UNKNOWN}");
                return Err(Failure {
                    error: HandlerError::Permanent(OUTCOME_UNKNOWN.into()),
                    label: "outcome_unknown",
                });
            }
            Claim::Unknown => {
                let key = job.idempotency_key.clone();
                self.record(move |conn| sent_emails::restart(conn, &key, owner))
                    .await?;
            }
            Claim::Fresh => {}
        }

        // The point of no return: from here a crash leaves the outcome
        // unknown; before it, the job is provably unsent.
        let key = job.idempotency_key.clone();
        let began = self
            .record(move |conn| sent_emails::begin_send(conn, &key, owner))
            .await?;
        if !began {
            return Err(in_progress().into());
        }
        let key = job.idempotency_key.clone();
        match self.transport.send(email).await {
            Ok(()) => {
                self.record_outcome("sent", move |conn| sent_emails::mark_sent(conn, &key))
                    .await;
                Ok("sent")
            }
            Err(failure) => {
                // The server did not take it: forget the claim so a retry sends.
                self.record_outcome("refused", move |conn| {
                    sent_emails::release(conn, &key, owner)
                })
                .await;
                Err(if failure.permanent {
                    HandlerError::Permanent(failure.reason)
                } else {
                    HandlerError::Transient(failure.reason)
                }
                .into())
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
        match self.send(&message).await {
            Ok(label) => {
                self.metrics.count(template, label);
                Ok(())
            }
            Err(Failure { error, label }) => {
                self.metrics.count(template, label);
                tracing::warn!(template, error = %error, "email not sent");
                Err(error)
            }
        }
    }
}
