//! The `process` provider: host agents as processes of this machine, one
//! port each from `HOST_AGENT_PORTS`, stopped with SIGTERM. Agents outlive
//! a worker restart (they are instances serving clients); a worker that
//! did not start one still watches it by pid.

use super::provider::{LaunchSpec, Provider, ProviderError, Termination};
use crate::store::launched::{self, Reservation};
use bus::RelayHandle;
use futures_util::future::BoxFuture;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use platform::db::{self, DbError, PgPool};
use secrecy::{ExposeSecret, SecretString};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;
use uuid::Uuid;

/// How long an agent has to exit after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);

/// What the provider needs to launch agents.
#[derive(Clone)]
pub struct ProcessSettings {
    pub binary: PathBuf,
    pub ports: RangeInclusive<u16>,
    pub scheduler_url: String,
    pub registration_secret: SecretString,
    /// This machine's name, as launched agents record it.
    pub host: String,
}

pub struct ProcessProvider {
    pool: PgPool,
    settings: ProcessSettings,
    relay: RelayHandle,
}

fn transient(err: DbError) -> ProviderError {
    ProviderError::Transient(err.to_string())
}

/// The kernel's start time of `pid`, in clock ticks since boot (field 22
/// of `/proc/<pid>/stat`): with the pid it names one process, where a pid
/// alone may have been reused.
fn process_start(pid: i32) -> Option<i64> {
    start_in_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn start_in_stat(stat: &str) -> Option<i64> {
    // Field 2, the command, is in parentheses and may hold spaces and
    // parentheses: the fields after it start at the last ')'. Field 22 is
    // the 20th of them.
    let after_command = stat.rsplit_once(')')?.1;
    after_command.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the agent's process runs: its pid, started when it was.
fn alive(agent: &launched::LaunchedAgent) -> bool {
    match (agent.pid, agent.process_start) {
        (Some(pid), Some(start)) => process_start(pid) == Some(start),
        // Recorded without its start time: the pid alone, at worst.
        (Some(pid), None) => kill(Pid::from_raw(pid), None).is_ok(),
        _ => false,
    }
}

impl ProcessProvider {
    pub fn new(pool: PgPool, settings: ProcessSettings, relay: RelayHandle) -> Self {
        Self {
            pool,
            settings,
            relay,
        }
    }

    /// A port of the range no live agent holds and nothing listens on,
    /// reserved for the instance; `None` if the instance is being launched
    /// already.
    async fn reserve_port(&self, spec: &LaunchSpec) -> Result<Option<u16>, ProviderError> {
        let host = self.settings.host.clone();
        let in_use = db::read(&self.pool, move |conn| launched::ports_in_use(conn, &host))
            .await
            .map_err(transient)?;
        for port in self.settings.ports.clone() {
            if in_use.contains(&i32::from(port)) || TcpListener::bind(("0.0.0.0", port)).is_err() {
                continue;
            }
            let spec_for_row = spec.clone();
            let host = self.settings.host.clone();
            let reserved = db::run(&self.pool, move |conn| {
                launched::reserve(conn, &spec_for_row, &host, i32::from(port))
                    .map_err(DbError::from)
            })
            .await
            .map_err(transient)?;
            match reserved {
                Reservation::Reserved => return Ok(Some(port)),
                Reservation::AlreadyThere => return Ok(None),
                Reservation::PortTaken => continue,
            }
        }
        Err(ProviderError::Failed(format!(
            "no free port in HOST_AGENT_PORTS ({}-{})",
            self.settings.ports.start(),
            self.settings.ports.end()
        )))
    }

    fn command(&self, spec: &LaunchSpec, port: u16) -> Command {
        let mut command = Command::new(&self.settings.binary);
        // Only what an agent needs: the worker's own settings (its
        // database, broker and SMTP credentials) are not the agent's.
        command.env_clear();
        for inherited in [
            "PATH",
            "RUST_LOG",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command
            .env("SCHEDULER_URL", &self.settings.scheduler_url)
            .env(
                "REGISTRATION_SECRET",
                self.settings.registration_secret.expose_secret(),
            )
            .env("INSTANCE_ID", spec.instance_id.to_string())
            .env("REGION", &spec.region)
            .env("CAPACITY", spec.capacity.to_string())
            .env("PORT", port.to_string())
            .env("ADVERTISE_ADDRESS", format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            // Its output comes through this worker's (see `forward`), so
            // an agent never holds the worker's own stdout open: a worker
            // that stops does not leave a pipe behind it open.
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // The agent is an instance: it outlives this worker process.
            .kill_on_drop(false);
        command
    }

    async fn launch_inner(&self, spec: &LaunchSpec) -> Result<(), ProviderError> {
        let instance = spec.instance_id;
        let existing = db::read(&self.pool, move |conn| launched::find(conn, instance))
            .await
            .map_err(transient)?;
        if let Some(agent) = existing {
            if agent.is_live() {
                // Delivered again after the launch: nothing to repeat.
                return Ok(());
            }
            return Err(ProviderError::Failed(format!(
                "instance {instance} was launched before and is {}",
                agent.state
            )));
        }
        let Some(port) = self.reserve_port(spec).await? else {
            // The same job delivered twice at once: the other launches it.
            return Ok(());
        };
        let mut child = match self.command(spec, port).spawn() {
            Ok(child) => child,
            Err(err) => {
                return Err(ProviderError::Failed(format!(
                    "cannot start {}: {err}",
                    self.settings.binary.display()
                )))
            }
        };
        let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return Err(ProviderError::Failed("the agent exited at once".into()));
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, true));
        }
        let started = process_start(pid);
        db::run(&self.pool, move |conn| {
            launched::mark_running(conn, instance, pid, started).map_err(DbError::from)
        })
        .await
        .map_err(transient)?;
        tracing::info!(%instance, port, pid, region = %spec.region, "host agent launched");
        let pool = self.pool.clone();
        let relay = self.relay.clone();
        let region = spec.region.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let reason = match status {
                Ok(status) => format!("exited: {status}"),
                Err(err) => format!("lost: {err}"),
            };
            report_exit(&pool, &relay, instance, &region, &reason).await;
        });
        Ok(())
    }

    async fn terminate_inner(&self, instance: Uuid) -> Result<Termination, ProviderError> {
        let agent = db::read(&self.pool, move |conn| launched::find(conn, instance))
            .await
            .map_err(transient)?;
        let Some(agent) = agent else {
            return Ok(Termination::NotRunning("not launched by a worker".into()));
        };
        if !agent.is_live() {
            return Ok(Termination::NotRunning(format!("already {}", agent.state)));
        }
        if agent.host != self.settings.host {
            return Err(ProviderError::Transient(format!(
                "the agent runs on {}, not here",
                agent.host
            )));
        }
        let Some(pid) = agent.pid.filter(|_| alive(&agent)) else {
            return Ok(Termination::NotRunning("its process is gone".into()));
        };
        // Ended first, so that its exit is not reported as one of its own.
        db::run(&self.pool, move |conn| {
            launched::end(conn, instance, "terminated", "terminate requested")
                .map_err(DbError::from)
        })
        .await
        .map_err(transient)?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
        while alive(&agent) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(&agent) {
            tracing::warn!(%instance, pid, "the agent ignored SIGTERM; killing it");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        Ok(Termination::Stopped)
    }

    /// Agents of this machine whose process is gone without anyone
    /// noticing (launched by a worker that has restarted since): reported.
    pub async fn sweep(&self) {
        let host = self.settings.host.clone();
        let running =
            match db::read(&self.pool, move |conn| launched::running_on(conn, &host)).await {
                Ok(running) => running,
                Err(err) => {
                    tracing::warn!(error = %err, "could not list the agents launched here");
                    return;
                }
            };
        for agent in running {
            if agent.pid.is_some() && !alive(&agent) {
                report_exit(
                    &self.pool,
                    &self.relay,
                    agent.instance_id,
                    &agent.region,
                    "exited",
                )
                .await;
            }
        }
    }
}

/// Copies an agent's output, line by line, to this worker's stdout (or
/// stderr), until the agent closes it or this worker stops.
async fn forward(from: impl tokio::io::AsyncRead + Unpin, to_stderr: bool) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = if to_stderr {
            writeln!(std::io::stderr().lock(), "{line}")
        } else {
            writeln!(std::io::stdout().lock(), "{line}")
        };
    }
}

/// An agent exited by itself: reported once (`instance.terminated`).
async fn report_exit(
    pool: &PgPool,
    relay: &RelayHandle,
    instance: Uuid,
    region: &str,
    reason: &str,
) {
    let region_for_row = region.to_string();
    let reason_for_row = reason.to_string();
    let reported = db::run(pool, move |conn| {
        launched::gone(
            conn,
            instance,
            &region_for_row,
            None,
            "exited",
            &reason_for_row,
        )
        .map_err(DbError::from)
    })
    .await;
    match reported {
        Ok(()) => relay.wake(),
        // The sweep reports it later.
        Err(err) => tracing::warn!(%instance, error = %err, "could not report an agent's exit"),
    }
}

impl Provider for ProcessProvider {
    fn name(&self) -> &'static str {
        "process"
    }

    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.launch_inner(spec))
    }

    fn terminate(&self, instance_id: Uuid) -> BoxFuture<'_, Result<Termination, ProviderError>> {
        Box::pin(self.terminate_inner(instance_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_by_its_pid_and_start_time() {
        let line = "4242 (host agent (x)) S 1 4242 4242 0 -1 4194560 151 0 0 0 0 0 0 0 20 0 1 0 987654 12345 67 1844";
        assert_eq!(start_in_stat(line), Some(987_654));
        assert_eq!(start_in_stat("garbage"), None);
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let start = process_start(me);
        assert!(start.is_some());
        assert_eq!(process_start(me), start, "stable for one process");
    }
}
