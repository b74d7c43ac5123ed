//! The command line every service binary shares.
//!
//! `<binary> [serve]` runs the service, `migrate` applies its migrations and
//! declares its broker topology, `healthcheck` asks the running service on
//! this machine whether it is alive (container images have no curl), and
//! `openapi` prints the API document. A service adds its own commands
//! (`create-admin`, `rotate-keys`, `dead-letters ...`) through
//! [`Binary::command`]. The order is the same everywhere: help and the
//! commands that need no configuration first, then the configuration (a bad
//! setting is one line naming it, exit 2, whatever was asked), then
//! telemetry, then the command.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// A service binary: its name, its usage text and its commands.
#[allow(async_fn_in_trait)] // awaited on the binary's own (single-threaded) runtime
pub trait Binary {
    /// The binary's (and telemetry's) name.
    const NAME: &'static str;
    /// The commands, one per line, as `--help` prints them.
    const USAGE: &'static str;
    /// Where the service's `healthz` and `readyz` are, e.g. `/api/auth`.
    const PREFIX: &'static str;
    /// The port the service listens on when `PORT` is not set.
    const DEFAULT_PORT: u16;

    type Config;

    /// Loads the configuration, or ends the process with one line naming
    /// the bad variable.
    fn load_config() -> Self::Config;

    /// The service's API document, as it serves it.
    fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi>;

    /// Runs the service until SIGTERM or Ctrl-C.
    async fn serve(config: Self::Config) -> anyhow::Result<()>;

    /// Applies the migrations and declares the broker topology.
    async fn migrate(config: Self::Config) -> anyhow::Result<()> {
        let _ = config;
        anyhow::bail!("{} has no database to migrate", Self::NAME)
    }

    /// The service's own commands: `None` when `args` is not one of them.
    async fn command(config: Self::Config, args: &[String]) -> Option<anyhow::Result<()>> {
        let _ = (config, args);
        None
    }
}

/// Usage lines every binary has, after its own.
const COMMON_USAGE: &str =
    "  healthcheck  exit 0 when the service on this machine answers its health check
  openapi      print the OpenAPI document";

/// Runs the binary's command line; `main` is this one call.
pub async fn main<B: Binary>() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("serve");
    match command {
        "-h" | "--help" | "help" => {
            println!("{}", usage::<B>());
            return ExitCode::SUCCESS;
        }
        "healthcheck" => return report::<B>(healthcheck::<B>()),
        "openapi" => return report::<B>(print_openapi::<B>()),
        _ => {}
    }
    let config = B::load_config();
    let _telemetry = crate::telemetry::init(B::NAME);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        [] | ["serve"] => B::serve(config).await,
        ["migrate"] => B::migrate(config).await,
        _ => match B::command(config, &args).await {
            Some(outcome) => outcome,
            None => Err(anyhow::anyhow!(
                "unknown command `{}`\n{}",
                args.join(" "),
                usage::<B>()
            )),
        },
    };
    report::<B>(outcome)
}

fn usage<B: Binary>() -> String {
    format!(
        "usage: {} [command]\n\n{}\n{COMMON_USAGE}",
        B::NAME,
        B::USAGE
    )
}

fn report<B: Binary>(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}: {err:#}", B::NAME);
            ExitCode::FAILURE
        }
    }
}

fn print_openapi<B: Binary>() -> anyhow::Result<()> {
    let document = B::openapi()?;
    println!("{}", document.to_pretty_json()?);
    Ok(())
}

/// How long the health check may take in all: Docker's own timeout is
/// longer, so a hung service is reported by us, with a reason.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Healthy means: ready once, alive since. Until the service has answered
/// `readyz` with 200 it is not healthy, so a release that never reaches
/// its database or broker fails its rolling update (and is rolled back);
/// after that, `healthz` decides, so an outage of the database or the
/// broker, which readiness reports to the gateway, does not make the
/// orchestrator restart every replica while it lasts.
fn healthcheck<B: Binary>() -> anyhow::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(raw) if !raw.is_empty() => raw
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| anyhow::anyhow!("PORT must be a port number (1 to 65535)"))?,
        _ => B::DEFAULT_PORT,
    };
    let host = std::env::var("HOST").unwrap_or_default();
    let address = probe_address(&host, port)?;
    let marker = std::env::temp_dir().join(format!("{}-{port}.was-ready", B::NAME));
    healthy(address, B::PREFIX, &marker, HEALTHCHECK_TIMEOUT)
}

fn healthy(
    address: SocketAddr,
    prefix: &str,
    was_ready: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    if !was_ready.exists() {
        let status = http_status(address, &format!("{prefix}/readyz"), timeout)?;
        if status != 200 {
            anyhow::bail!("{prefix}/readyz answered {status} (not ready yet)");
        }
        // Best effort: without the mark the next check asks readyz again.
        let _ = std::fs::write(was_ready, b"");
        return Ok(());
    }
    let status = http_status(address, &format!("{prefix}/healthz"), timeout)?;
    if status == 200 {
        Ok(())
    } else {
        anyhow::bail!("{prefix}/healthz answered {status}")
    }
}

/// Where the service listens, seen from this machine: loopback when it
/// listens on every address.
fn probe_address(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        other => other.trim_start_matches('[').trim_end_matches(']'),
    };
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("HOST {host} resolves to no address"))
}

/// The status code of `GET path` over plain HTTP/1.1.
pub fn http_status(address: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|err| anyhow::anyhow!("cannot connect to {address}: {err}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // The status line is all we need; it fits in the first read.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    parse_status(&head[..read])
        .ok_or_else(|| anyhow::anyhow!("{address} did not answer with an HTTP status line"))
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers one request for `path` with `reply`.
    fn answer(path: &'static str, reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8_lossy(&request).to_string();
            let expected = format!("GET {path} HTTP/1.1\r\n");
            assert!(request.starts_with(&expected), "{request}");
            stream.write_all(reply.as_bytes()).unwrap();
        });
        address
    }

    #[test]
    fn reads_the_status_of_a_real_answer() {
        let ok = answer(
            "/api/x/healthz",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        );
        assert_eq!(
            http_status(ok, "/api/x/healthz", HEALTHCHECK_TIMEOUT).unwrap(),
            200
        );
        let down = answer("/api/x/healthz", "HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(
            http_status(down, "/api/x/healthz", HEALTHCHECK_TIMEOUT).unwrap(),
            503
        );
    }

    #[test]
    fn garbage_and_silence_are_errors() {
        let garbage = answer("/api/x/healthz", "SSH-2.0-OpenSSH\r\n");
        assert!(http_status(garbage, "/api/x/healthz", HEALTHCHECK_TIMEOUT).is_err());
        // Nobody listens on a port just released.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = http_status(closed, "/api/x/healthz", HEALTHCHECK_TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }

    #[test]
    fn healthy_means_ready_once_then_alive() {
        let marker =
            std::env::temp_dir().join(format!("cli-test-{}.was-ready", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let not_ready = answer("/api/x/readyz", "HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = healthy(not_ready, "/api/x", &marker, HEALTHCHECK_TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("not ready yet"), "{err}");
        assert!(!marker.exists());

        let ready = answer("/api/x/readyz", "HTTP/1.1 200 OK\r\n\r\n");
        healthy(ready, "/api/x", &marker, HEALTHCHECK_TIMEOUT).unwrap();
        assert!(marker.exists());

        // Once ready, only liveness counts: readyz is not asked again.
        let alive = answer("/api/x/healthz", "HTTP/1.1 200 OK\r\n\r\n");
        healthy(alive, "/api/x", &marker, HEALTHCHECK_TIMEOUT).unwrap();
        let dead = answer(
            "/api/x/healthz",
            "HTTP/1.1 500 Internal Server Error\r\n\r\n",
        );
        assert!(healthy(dead, "/api/x", &marker, HEALTHCHECK_TIMEOUT).is_err());
        std::fs::remove_file(&marker).unwrap();
    }

    #[test]
    fn a_service_on_every_address_is_probed_on_loopback() {
        assert_eq!(
            probe_address("", 8001).unwrap().to_string(),
            "127.0.0.1:8001"
        );
        assert_eq!(
            probe_address("0.0.0.0", 8001).unwrap().to_string(),
            "127.0.0.1:8001"
        );
        assert_eq!(probe_address("::", 8001).unwrap().to_string(), "[::1]:8001");
        assert_eq!(
            probe_address("10.1.2.3", 8001).unwrap().to_string(),
            "10.1.2.3:8001"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/2 200\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
