//! A WebSocket client for tests: JSON frames in and out, with timeouts,
//! and the close code the server ended with.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What came from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Frame(Value),
    /// The server closed with this code (and reason).
    Closed(Option<u16>, String),
    /// Nothing within the wait.
    Nothing,
}

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while looking for another kind, kept for later.
    pending: std::collections::VecDeque<Value>,
}

impl WsClient {
    /// Connects to `url` (`ws://...`); panics if the handshake fails.
    pub async fn connect(url: &str) -> Self {
        match Self::try_connect(url).await {
            Ok(client) => client,
            Err(err) => panic!("websocket connect to {url}: {err}"),
        }
    }

    pub async fn try_connect(url: &str) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self {
            stream,
            pending: Default::default(),
        })
    }

    /// Connects with a receive buffer of a few KiB, so that a test that
    /// stops reading makes the server's writes back up quickly.
    pub async fn connect_with_small_buffer(url: &str) -> Self {
        let address = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let connect = async {
            let address: std::net::SocketAddr = address.parse().map_err(std::io::Error::other)?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            let stream = socket.connect(address).await?;
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
                .await
                .map_err(std::io::Error::other)
        };
        match connect.await {
            Ok((stream, _)) => Self {
                stream,
                pending: Default::default(),
            },
            Err(err) => panic!("websocket connect to {url}: {err}"),
        }
    }

    /// Connects and sends the `auth` frame.
    pub async fn authed(url: &str, token: &str) -> Self {
        let mut client = Self::connect(url).await;
        client
            .send(serde_json::json!({"type": "auth", "token": token}))
            .await;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        // A closed connection shows in what is received next.
        let _ = self.stream.send(Message::text(text.to_string())).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        let _ = self.stream.send(Message::binary(bytes)).await;
    }

    /// The next text frame, close or nothing within `wait`; pings and
    /// pongs are skipped (tungstenite answers pings itself).
    pub async fn receive(&mut self, wait: Duration) -> Received {
        if let Some(frame) = self.pending.pop_front() {
            return Received::Frame(frame);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Err(_) => return Received::Nothing,
                Ok(None) => return Received::Closed(None, String::new()),
                Ok(Some(Err(_))) => return Received::Closed(None, String::new()),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    return Received::Frame(value);
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return match frame {
                        Some(frame) => {
                            Received::Closed(Some(u16::from(frame.code)), frame.reason.to_string())
                        }
                        None => Received::Closed(Some(u16::from(CloseCode::Status)), String::new()),
                    }
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame; panics on a close or a timeout.
    pub async fn frame(&mut self) -> Value {
        match self.receive(DEFAULT_WAIT).await {
            Received::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of `kind`; frames of other kinds before it are set
    /// aside for later calls. Panics if none comes.
    pub async fn frame_of(&mut self, kind: &str) -> Value {
        if let Some(at) = self.pending.iter().position(|frame| frame["type"] == kind) {
            if let Some(frame) = self.pending.remove(at) {
                return frame;
            }
        }
        let deadline = tokio::time::Instant::now() + DEFAULT_WAIT;
        let mut aside = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.receive(left).await {
                Received::Frame(frame) if frame["type"] == kind => break Ok(frame),
                Received::Frame(frame) => aside.push(frame),
                other => break Err(other),
            }
        };
        self.pending = pending;
        self.pending.extend(aside);
        match found {
            Ok(frame) => frame,
            Err(other) => panic!("expected a {kind} frame, got {other:?}"),
        }
    }

    /// Frames until `wait` passes without one.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Received::Frame(frame) = self.receive(wait).await {
            frames.push(frame);
        }
        frames
    }

    /// Waits for the close and returns its code; panics on a frame
    /// other than `error` frames, which it skips.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.receive(DEFAULT_WAIT).await {
                Received::Closed(code, _) => return code,
                Received::Frame(frame) if frame["type"] == "error" => continue,
                other => panic!("expected the server to close, got {other:?}"),
            }
        }
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
