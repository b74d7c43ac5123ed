//! A real SMTP server for tests: it speaks enough ESMTP for lettre and other
//! clients, keeps what it accepts, and answers the end of DATA as scripted
//! (`451` twice, then `250`, say) to exercise retries and rejections.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as transmitted (headers and body, dot-unstuffed).
    pub data: String,
    pub received_at: std::time::Instant,
}

#[derive(Default)]
struct State {
    accepted: Vec<ReceivedMail>,
    data_replies: VecDeque<u16>,
    sessions: usize,
    /// Hold every message at the end of DATA without answering.
    stall: bool,
    /// Messages held so far.
    stalled: usize,
}

#[derive(Clone)]
pub struct SmtpSink {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    accepted: Arc<Notify>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// On a given local port (0 for any).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let accepted = Arc::new(Notify::new());
        let task = {
            let state = state.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    let accepted = accepted.clone();
                    tokio::spawn(async move {
                        let _ = session(stream, state, accepted).await;
                    });
                }
            })
        };
        Ok(Self {
            address,
            state,
            accepted,
            task: Arc::new(task),
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `smtp://127.0.0.1:<port>` for lettre.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port())
    }

    /// Replies for the next ends of DATA, in order; `250` after they run out.
    pub fn script(&self, codes: &[u16]) {
        if let Ok(mut state) = self.state.lock() {
            state.data_replies.extend(codes.iter().copied());
        }
    }

    /// While on, the end of DATA gets no answer: a client is left inside
    /// the SMTP transaction, not knowing whether its message was taken.
    pub fn stall(&self, on: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.stall = on;
        }
    }

    /// How many messages reached the end of DATA while stalled.
    pub fn stalled(&self) -> usize {
        self.state.lock().map(|s| s.stalled).unwrap_or_default()
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state
            .lock()
            .map(|s| s.accepted.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `count` messages were accepted.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.accepted.notified();
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn reply_text(code: u16) -> String {
    let text = match code {
        250 => "2.0.0 OK: queued",
        421 => "4.3.2 Service not available",
        450 | 451 => "4.3.0 Temporary failure, try again later",
        452 => "4.3.1 Insufficient storage",
        550 => "5.1.1 Mailbox unavailable",
        552 => "5.3.4 Message too big",
        554 => "5.7.1 Rejected",
        _ => "Scripted reply",
    };
    format!("{code} {text}\r\n")
}

fn address_in(line: &str) -> String {
    line.split_once(':')
        .map(|(_, rest)| {
            rest.trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Waits while the sink is stalled; true if the message was held (it is
/// then never answered: the session ends when the client gives up).
async fn hold_if_stalled(state: &Arc<Mutex<State>>) -> bool {
    let held = state
        .lock()
        .map(|mut s| {
            if s.stall {
                s.stalled += 1;
            }
            s.stall
        })
        .unwrap_or(false);
    if held {
        while state.lock().map(|s| s.stall).unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    held
}

async fn session(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    accepted: Arc<Notify>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    if let Ok(mut state) = state.lock() {
        state.sessions += 1;
    }
    writer
        .write_all(b"220 testkit-sink ESMTP ready\r\n")
        .await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => writer
                .write_all(
                    b"250-testkit-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n",
                )
                .await?,
            "HELO" => writer.write_all(b"250 testkit-sink\r\n").await?,
            "MAIL" => {
                from = address_in(&command);
                to.clear();
                writer.write_all(b"250 2.1.0 OK\r\n").await?;
            }
            "RCPT" => {
                to.push(address_in(&command));
                writer.write_all(b"250 2.1.5 OK\r\n").await?;
            }
            "DATA" => {
                writer
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                if hold_if_stalled(&state).await {
                    return Ok(());
                }
                let code = state
                    .lock()
                    .ok()
                    .and_then(|mut s| s.data_replies.pop_front())
                    .unwrap_or(250);
                if code == 250 {
                    if let Ok(mut state) = state.lock() {
                        state.accepted.push(ReceivedMail {
                            from: from.clone(),
                            to: to.clone(),
                            data,
                            received_at: std::time::Instant::now(),
                        });
                    }
                }
                writer.write_all(reply_text(code).as_bytes()).await?;
                if code == 250 {
                    accepted.notify_waiters();
                }
            }
            "RSET" => {
                from.clear();
                to.clear();
                writer.write_all(b"250 2.0.0 OK\r\n").await?;
            }
            "NOOP" => writer.write_all(b"250 2.0.0 OK\r\n").await?,
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => {
                writer
                    .write_all(b"502 5.5.2 Command not recognized\r\n")
                    .await?
            }
        }
    }
}

/// Decodes the quoted-printable parts of a message well enough to read links.
pub fn quoted_printable_decoded(data: &str) -> String {
    let unfolded = data.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(unfolded.len());
    let mut chars = unfolded.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.clone().take(2).collect();
            if let Ok(byte) = u8::from_str_radix(&hex, 16) {
                out.push(byte as char);
                chars.next();
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}
