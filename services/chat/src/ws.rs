//! `GET /api/chat/ws`: one task per connection. It reads client frames
//! (auth first, then the rest, under a frame size limit and a rate limit),
//! writes what the hub queues for it (keeping each room's messages in seq
//! order, fetching any gap from the database), pings, and closes idle,
//! slow or unauthenticated connections, and all of them on shutdown.

use crate::config::WsLimits;
use crate::conversation::{self, Party};
use crate::live::frames::{close, codes, ClientFrame, ServerFrame};
use crate::live::hub::{ConnId, ConnSignals, Delivery, Kicked, Outbound};
use crate::model::Message;
use crate::model::{Body, ClientMsgId, RoomStatus};
use crate::presence;
use crate::state::AppState;
use crate::store::messages;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use authn::Verifier;
use futures_util::StreamExt;
use platform::db::{self, DbError};
use platform::error::Error;
use platform::http::lifecycle::{Lifecycle, LongLived};
use platform::Problem;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use uuid::Uuid;

/// Messages read from the database per query when replaying.
const REPLAY_PAGE: i64 = 500;

/// Open a WebSocket. Send `{"type":"auth","token":"<access token>"}`
/// first; see the API guide for every frame.
#[utoipa::path(
    tag = "live",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = platform::http::problem::ProblemBody, content_type = "application/problem+json"),
    )
)]
#[get("/ws")]
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    verifier: web::Data<Verifier>,
    lifecycle: web::Data<Lifecycle>,
) -> Result<HttpResponse, Error> {
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|_| {
        Problem::bad_request("expected a WebSocket upgrade (GET with Upgrade: websocket)")
    })?;
    let limits = state.limits;
    let stream = stream
        .max_frame_size(limits.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(limits.max_frame_bytes);
    let connection = Connection::new(state, verifier, session);
    let guard = lifecycle.long_lived();
    actix_web::rt::spawn(connection.run(stream, guard));
    Ok(response)
}

/// Who the connection belongs to, once `auth` succeeded.
struct Authed {
    party: Party,
    expires_at: Instant,
    id: ConnId,
    signals: Arc<ConnSignals>,
    /// The row in `connections` (agents).
    record: Option<Uuid>,
}

/// What the connection's one timer is set for.
#[derive(Debug, Clone, Copy)]
enum Timer {
    Ping,
    AuthTimeout,
    Expired,
}

/// How the connection ends.
struct Closing(u16, &'static str);

type Flow = Result<(), Closing>;

/// Client frames allowed, refilled at `messages_per_sec` up to `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
    refused_in_a_row: u32,
    last_warning: Option<Instant>,
}

impl Bucket {
    fn new(limits: &WsLimits) -> Self {
        Self {
            tokens: f64::from(limits.burst),
            rate: f64::from(limits.messages_per_sec),
            burst: f64::from(limits.burst),
            at: Instant::now(),
            refused_in_a_row: 0,
            last_warning: None,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }

    /// One warning a second is enough.
    fn should_warn(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if due {
            self.last_warning = Some(now);
        }
        due
    }
}

struct Connection {
    state: web::Data<AppState>,
    verifier: web::Data<Verifier>,
    session: Session,
    authed: Option<Authed>,
    /// Rooms followed, and the last seq delivered in each.
    following: HashMap<Uuid, i64>,
    bucket: Bucket,
    last_heard: Instant,
}

impl Connection {
    fn new(state: web::Data<AppState>, verifier: web::Data<Verifier>, session: Session) -> Self {
        let limits = state.limits;
        Self {
            state,
            verifier,
            session,
            authed: None,
            following: HashMap::new(),
            bucket: Bucket::new(&limits),
            last_heard: Instant::now(),
        }
    }

    async fn run(mut self, mut stream: AggregatedMessageStream, mut guard: LongLived) {
        self.state.metrics.connections.inc();
        let auth_deadline = Instant::now() + self.state.limits.auth_timeout;
        let mut next_ping = Instant::now() + self.state.limits.ping_every;
        let outcome: Closing = loop {
            let signals = self.authed.as_ref().map(|a| a.signals.clone());
            // One timer at a time: the task of an idle connection keeps
            // only what it waits on.
            let (deadline, timer) = match &self.authed {
                None if auth_deadline < next_ping => (auth_deadline, Timer::AuthTimeout),
                Some(authed) if authed.expires_at < next_ping => {
                    (authed.expires_at, Timer::Expired)
                }
                _ => (next_ping, Timer::Ping),
            };
            let flow = tokio::select! {
                biased;
                _ = guard.going_away() => Err(Closing(close::GOING_AWAY, "the server is restarting")),
                frame = stream.next() => match frame {
                    None => break Closing(0, ""),
                    Some(Ok(frame)) => {
                        self.last_heard = Instant::now();
                        // Boxed: an idle connection's task keeps only the
                        // small waiting state, not the largest handler's.
                        Box::pin(self.on_frame(frame)).await
                    }
                    Some(Err(actix_ws::ProtocolError::Overflow)) => {
                        Err(Closing(close::TOO_BIG, "frame too large"))
                    }
                    Some(Err(_)) => Err(Closing(close::POLICY, "protocol error")),
                },
                next = async { match &signals { Some(s) => s.next().await, None => std::future::pending().await } } => match next {
                    Ok(Outbound::Frame(delivery)) => Box::pin(self.forward(&delivery)).await,
                    Ok(Outbound::Resync) => Box::pin(self.resync()).await,
                    Err(Kicked) => Err(Closing(close::SLOW_READER, "send queue full: reading too slowly")),
                },
                _ = sleep_until(deadline) => Box::pin(self.on_timer(timer, &mut next_ping)).await,
            };
            if let Err(closing) = flow {
                break closing;
            }
        };
        Box::pin(self.finish(outcome)).await;
    }

    async fn on_timer(&mut self, timer: Timer, next_ping: &mut Instant) -> Flow {
        match timer {
            Timer::Ping => {
                *next_ping = Instant::now() + self.state.limits.ping_every;
                if self.last_heard.elapsed() >= self.state.limits.idle_timeout {
                    Err(Closing(close::IDLE, "idle timeout"))
                } else if self.session.ping(b"").await.is_err() {
                    Err(Closing(0, ""))
                } else {
                    Ok(())
                }
            }
            Timer::AuthTimeout => {
                let _ = self
                    .error(codes::UNAUTHORIZED, "send an auth frame first")
                    .await;
                Err(Closing(close::UNAUTHORIZED, "authentication timed out"))
            }
            Timer::Expired => {
                let _ = self
                    .error(
                        codes::UNAUTHORIZED,
                        "the access token expired; reconnect with a fresh one",
                    )
                    .await;
                Err(Closing(close::UNAUTHORIZED, "token expired"))
            }
        }
    }

    async fn finish(mut self, Closing(code, reason): Closing) {
        self.state.metrics.connections.dec();
        if let Some(authed) = self.authed.take() {
            self.state
                .live
                .hub
                .unregister(authed.id, self.following.keys().copied());
            if let Some(record) = authed.record {
                presence::disconnected(&self.state, record, authed.party.user_id()).await;
            }
        }
        if code != 0 {
            let reason = CloseReason {
                code: CloseCode::from(code),
                description: Some(reason.to_string()),
            };
            // A reader that does not read gets no close frame either.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.session.close(Some(reason)))
                .await;
        }
    }

    async fn send_text(&mut self, text: impl Into<bytestring::ByteString>) -> Flow {
        let signals = self.authed.as_ref().map(|a| a.signals.clone());
        let sent = tokio::select! {
            sent = self.session.text(text) => sent.is_ok(),
            _ = async { match &signals { Some(s) => s.kicked().await, None => std::future::pending().await } } => {
                return Err(Closing(close::SLOW_READER, "send queue full: reading too slowly"));
            }
        };
        if sent {
            self.state.metrics.frames_out.inc();
            Ok(())
        } else {
            Err(Closing(0, ""))
        }
    }

    async fn send_frame(&mut self, frame: ServerFrame<'_>) -> Flow {
        let text = frame.to_text();
        self.send_text(text).await
    }

    async fn error(&mut self, code: &str, message: &str) -> Flow {
        self.send_frame(ServerFrame::Error { code, message }).await
    }

    /// An error frame for a failed operation; the connection goes on.
    async fn refuse(&mut self, err: Error) -> Flow {
        let (code, message) = describe(&err);
        self.error(code, &message).await
    }

    async fn on_frame(&mut self, frame: AggregatedMessage) -> Flow {
        match frame {
            AggregatedMessage::Text(text) => self.on_text(&text).await,
            AggregatedMessage::Binary(_) => {
                self.count("binary");
                if self.authed.is_none() {
                    return self.unauthenticated().await;
                }
                self.error(codes::INVALID, "frames are JSON text").await
            }
            AggregatedMessage::Ping(bytes) => {
                if self.session.pong(&bytes).await.is_err() {
                    return Err(Closing(0, ""));
                }
                Ok(())
            }
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(_) => Err(Closing(1000, "bye")),
        }
    }

    fn count(&self, kind: &str) {
        self.state
            .metrics
            .frames_in
            .with_label_values(&[kind])
            .inc();
    }

    async fn unauthenticated(&mut self) -> Flow {
        self.error(
            codes::UNAUTHORIZED,
            "the first frame must be {\"type\":\"auth\",\"token\":...}",
        )
        .await?;
        Err(Closing(close::UNAUTHORIZED, "authentication required"))
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if !self.bucket.take() {
            self.count("rate_limited");
            if self.bucket.refused_in_a_row > self.state.limits.burst {
                return Err(Closing(close::POLICY, "too many frames"));
            }
            if self.bucket.should_warn() {
                return self
                    .error(codes::RATE_LIMITED, "too many frames; slow down")
                    .await;
            }
            return Ok(());
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => {
                self.count("invalid");
                if self.authed.is_none() {
                    return self.unauthenticated().await;
                }
                let message = format!("not a frame this server knows: {err}");
                return self.error(codes::INVALID, &message).await;
            }
        };
        self.count(frame_name(&frame));
        match (frame, self.authed.is_some()) {
            (ClientFrame::Auth { token }, _) => self.authenticate(&token).await,
            (_, false) => self.unauthenticated().await,
            (ClientFrame::Ping, true) => self.send_frame(ServerFrame::Pong).await,
            (ClientFrame::Subscribe { room_id, after_seq }, true) => {
                self.subscribe(room_id, after_seq).await
            }
            (ClientFrame::Unsubscribe { room_id }, true) => {
                if self.following.remove(&room_id).is_some() {
                    if let Some(authed) = &self.authed {
                        self.state.live.hub.unfollow(authed.id, room_id);
                    }
                }
                Ok(())
            }
            (
                ClientFrame::Send {
                    room_id,
                    client_msg_id,
                    body,
                },
                true,
            ) => self.post(room_id, &client_msg_id, &body).await,
            (ClientFrame::Typing { room_id }, true) => self.typing(room_id).await,
            (ClientFrame::Read { room_id, seq }, true) => self.read(room_id, seq).await,
        }
    }

    fn party(&self) -> Option<Party> {
        self.authed.as_ref().map(|a| a.party)
    }

    async fn authenticate(&mut self, token: &str) -> Flow {
        let claims = match self.verifier.verify_once(token).await {
            Ok(claims) => claims,
            Err(err) => {
                let message = format!("invalid access token: {err}");
                self.error(codes::UNAUTHORIZED, &message).await?;
                return Err(Closing(close::UNAUTHORIZED, "invalid token"));
            }
        };
        let Ok(user_id) = claims.sub.parse::<Uuid>() else {
            self.error(
                codes::UNAUTHORIZED,
                "invalid access token: sub is not a user id",
            )
            .await?;
            return Err(Closing(close::UNAUTHORIZED, "invalid token"));
        };
        let now = chrono::Utc::now().timestamp();
        // The same leeway the verifier allows, so an accepted token is not
        // closed at once.
        let left = claims
            .exp
            .saturating_sub(now)
            .saturating_add(Verifier::LEEWAY_SECS as i64);
        let expires_at = Instant::now() + Duration::from_secs(left.max(0) as u64);
        let party = Party::of(user_id, &claims.roles);
        if let Some(authed) = &mut self.authed {
            // A fresh token for the same connection.
            if authed.party.user_id() != user_id {
                self.error(codes::UNAUTHORIZED, "the token is for another user")
                    .await?;
                return Err(Closing(close::UNAUTHORIZED, "another user"));
            }
            if authed.party != party {
                // What this connection may do was decided by the roles it
                // started with.
                self.error(codes::UNAUTHORIZED, "your roles changed; reconnect")
                    .await?;
                return Err(Closing(close::UNAUTHORIZED, "roles changed"));
            }
            authed.expires_at = expires_at;
            return Ok(());
        }
        let record = party.is_agent().then(Uuid::now_v7);
        // Registered before presence says "online", so that the rooms this
        // agent is given on coming online reach this connection too.
        let (id, signals) = self.state.live.hub.register(
            user_id,
            party.is_agent(),
            record,
            self.state.limits.send_queue,
        );
        self.authed = Some(Authed {
            party,
            expires_at,
            id,
            signals,
            record,
        });
        if let Some(record) = record {
            if presence::connected(&self.state, user_id, record)
                .await
                .is_err()
            {
                if let Some(authed) = self.authed.as_mut() {
                    // Nothing to forget in the database: it was not written.
                    authed.record = None;
                }
                self.error(
                    codes::UNAVAILABLE,
                    "chat is not available right now; try again",
                )
                .await?;
                return Err(Closing(1013, "try again later"));
            }
        }
        Ok(())
    }

    async fn subscribe(&mut self, room_id: Uuid, after_seq: Option<i64>) -> Flow {
        let Some(party) = self.party() else {
            return self.unauthenticated().await;
        };
        if !self.following.contains_key(&room_id)
            && self.following.len() >= self.state.limits.max_subscriptions
        {
            return self
                .error(
                    codes::TOO_MANY_SUBSCRIPTIONS,
                    "unsubscribe from a room before following another",
                )
                .await;
        }
        if after_seq.is_some_and(|seq| seq < 0) {
            return self
                .error(codes::INVALID, "after_seq: must be 0 or more")
                .await;
        }
        let room = match db::run(&self.state.pool, move |conn| {
            conversation::visible_room(conn, party, room_id)
        })
        .await
        {
            Ok(room) => room,
            Err(err) => return self.refuse(err).await,
        };
        let Some((id, signals)) = self.authed.as_ref().map(|a| (a.id, a.signals.clone())) else {
            return Ok(());
        };
        // Follow first, then read: whatever commits from here on is either
        // in the replay or arrives live (or both, and seq drops the copy).
        signals.set_replaying(true);
        self.state.live.hub.follow(id, room_id, room.assignee_id);
        let start = after_seq.unwrap_or(room.last_seq).min(room.last_seq);
        self.following.insert(room_id, start);
        let replayed = self.catch_up(room_id).await;
        signals.set_replaying(false);
        replayed?;
        if signals.take_lagged() {
            // Live frames were dropped while replaying; the database has them.
            self.catch_up(room_id).await?;
        }
        Ok(())
    }

    /// Sends what the database has in the room beyond what was delivered.
    async fn catch_up(&mut self, room_id: Uuid) -> Flow {
        loop {
            let Some(after) = self.following.get(&room_id).copied() else {
                return Ok(());
            };
            let page = self.fetch(room_id, after, None).await?;
            let full = page.len() as i64 >= REPLAY_PAGE;
            self.send_messages(room_id, page).await?;
            if !full {
                return Ok(());
            }
        }
    }

    async fn fetch(
        &mut self,
        room_id: Uuid,
        after: i64,
        through: Option<i64>,
    ) -> Result<Vec<Message>, Closing> {
        let fetched = db::read(&self.state.pool, move |conn| match through {
            Some(through) => messages::range(conn, room_id, after, through),
            None => messages::page(conn, room_id, after, None, REPLAY_PAGE),
        })
        .await;
        match fetched {
            Ok(rows) => Ok(rows),
            Err(_) => {
                // Never skip what could not be read: the client reconnects
                // and resumes from its last seq.
                let _ = self
                    .error(
                        codes::UNAVAILABLE,
                        "messages could not be read; reconnect and resume",
                    )
                    .await;
                Err(Closing(1013, "try again later"))
            }
        }
    }

    async fn send_messages(&mut self, room_id: Uuid, rows: Vec<Message>) -> Flow {
        for row in rows {
            let delivered = self.following.get(&room_id).copied().unwrap_or(i64::MAX);
            if row.seq <= delivered {
                continue;
            }
            self.send_frame(ServerFrame::Message(&row)).await?;
            self.following.insert(room_id, row.seq);
        }
        Ok(())
    }

    /// A frame the hub queued for this connection.
    async fn forward(&mut self, delivery: &Delivery) -> Flow {
        let (Some(room_id), Some(seq)) = (delivery.room_id, delivery.seq) else {
            return self.send_text(delivery.text.clone()).await;
        };
        let Some(delivered) = self.following.get(&room_id).copied() else {
            return Ok(());
        };
        if seq <= delivered {
            return Ok(());
        }
        if seq > delivered + 1 {
            // A gap: something was lost or overtaken on the way. The
            // database has it, since it committed before it was published.
            let missing = self.fetch(room_id, delivered, Some(seq - 1)).await?;
            self.send_messages(room_id, missing).await?;
        }
        self.send_text(delivery.text.clone()).await?;
        self.following.insert(room_id, seq);
        Ok(())
    }

    async fn resync(&mut self) -> Flow {
        let rooms: Vec<Uuid> = self.following.keys().copied().collect();
        for room_id in rooms {
            self.catch_up(room_id).await?;
        }
        Ok(())
    }

    async fn post(&mut self, room_id: Uuid, client_msg_id: &str, body: &str) -> Flow {
        let Some(party) = self.party() else {
            return self.unauthenticated().await;
        };
        let client_msg_id = match ClientMsgId::parse(client_msg_id) {
            Ok(id) => id,
            Err(err) => {
                let message = format!("client_msg_id: {err}");
                return self.error(codes::INVALID, &message).await;
            }
        };
        let body = match Body::parse(body) {
            Ok(body) => body,
            Err(err) => {
                let message = format!("body: {err}");
                return self.error(codes::INVALID, &message).await;
            }
        };
        let posted = conversation::post(
            &self.state.messages,
            &self.state.pool,
            party,
            room_id,
            &client_msg_id,
            &body,
        )
        .await;
        match posted {
            Ok(posted) => {
                self.send_frame(ServerFrame::Ack {
                    client_msg_id: client_msg_id.as_str(),
                    seq: posted.message.seq,
                })
                .await?;
                if posted.created {
                    self.state.announce_message(&posted.message);
                }
                Ok(())
            }
            Err(err) => self.refuse(err).await,
        }
    }

    async fn typing(&mut self, room_id: Uuid) -> Flow {
        let Some(party) = self.party() else {
            return self.unauthenticated().await;
        };
        if !self.following.contains_key(&room_id) {
            let seen = db::run(&self.state.pool, move |conn| {
                conversation::visible_room(conn, party, room_id)
            })
            .await;
            match seen {
                Ok(room) if room.status != RoomStatus::Closed => {}
                Ok(_) => return self.error(codes::ROOM_CLOSED, "the room is closed").await,
                Err(err) => return self.refuse(err).await,
            }
        }
        let user_id = party.user_id();
        let frame = ServerFrame::Typing { room_id, user_id }.to_text();
        self.state.live.announce(
            crate::live::hub::Audience::Room {
                room_id,
                except_user: Some(user_id),
            },
            Some(room_id),
            None,
            frame,
        );
        Ok(())
    }

    async fn read(&mut self, room_id: Uuid, seq: i64) -> Flow {
        let Some(party) = self.party() else {
            return self.unauthenticated().await;
        };
        let marked = db::run(&self.state.pool, move |conn| {
            conversation::mark_read(conn, party, room_id, seq)
        })
        .await;
        match marked {
            Ok(seq) => {
                let frame = ServerFrame::Read {
                    room_id,
                    user_id: party.user_id(),
                    seq,
                }
                .to_text();
                self.state.live.announce(
                    crate::live::hub::Audience::Room {
                        room_id,
                        except_user: None,
                    },
                    Some(room_id),
                    None,
                    frame,
                );
                Ok(())
            }
            Err(err) => self.refuse(err).await,
        }
    }
}

fn frame_name(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Auth { .. } => "auth",
        ClientFrame::Subscribe { .. } => "subscribe",
        ClientFrame::Unsubscribe { .. } => "unsubscribe",
        ClientFrame::Send { .. } => "send",
        ClientFrame::Typing { .. } => "typing",
        ClientFrame::Read { .. } => "read",
        ClientFrame::Ping => "ping",
    }
}

/// The error frame for a failed operation: the same meaning as the REST
/// answer would carry.
fn describe(err: &Error) -> (&'static str, String) {
    match err {
        Error::Problem(problem) => {
            let status = problem.status_code().as_u16();
            let body = problem.body();
            let message = body.detail.clone().unwrap_or_else(|| body.title.clone());
            let code = match status {
                401 => codes::UNAUTHORIZED,
                403 => codes::FORBIDDEN,
                404 => codes::NOT_FOUND,
                409 if body.code == codes::ROOM_CLOSED => codes::ROOM_CLOSED,
                400 | 409 | 422 => codes::INVALID,
                503 => codes::UNAVAILABLE,
                _ => codes::INTERNAL,
            };
            (code, message)
        }
        Error::Db(DbError::Unavailable(_)) => (
            codes::UNAVAILABLE,
            "the database is not reachable right now".to_string(),
        ),
        other => {
            tracing::error!(error = ?other, "websocket operation failed");
            (codes::INTERNAL, "internal error".to_string())
        }
    }
}
