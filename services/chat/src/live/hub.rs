//! This replica's connections and what each follows, and delivery to them.
//! Delivery never waits: each connection has a bounded queue, and one that
//! overflows is a slow reader and is told to go (unless it is replaying
//! history, when live frames are dropped and fetched again afterwards).

use crate::metrics::ChatMetrics;
use bytestring::ByteString;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use uuid::Uuid;

pub type ConnId = u64;

/// A frame ready for the wire, shared by every connection it goes to.
#[derive(Debug)]
pub struct Delivery {
    pub room_id: Option<Uuid>,
    /// Set on `message` frames: the connection keeps them in order.
    pub seq: Option<i64>,
    pub text: ByteString,
}

#[derive(Debug, Clone)]
pub enum Outbound {
    Frame(Arc<Delivery>),
    /// Live frames may have been lost (the broker reconnected): fetch what
    /// the database has beyond what was delivered.
    Resync,
}

/// What a connection task and the hub share: the connection's bounded
/// send queue and its signals. The queue takes memory only while frames
/// wait in it, so an idle connection costs little.
#[derive(Debug)]
pub struct ConnSignals {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    /// Woken by a frame queued and by a kick alike: the connection task
    /// waits on one thing.
    wake: Notify,
    kicked: AtomicBool,
    replaying: AtomicBool,
    lagged: AtomicBool,
}

/// The queue was full.
struct Full;

/// The hub found the connection's queue full: it reads too slowly.
#[derive(Debug)]
pub struct Kicked;

impl ConnSignals {
    fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            kicked: AtomicBool::new(false),
            replaying: AtomicBool::new(false),
            lagged: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Outbound>> {
        // A panic while holding the lock cannot leave the queue half-changed.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, item: Outbound) -> Result<(), Full> {
        {
            let mut queue = self.queue();
            if queue.len() >= self.capacity {
                return Err(Full);
            }
            queue.push_back(item);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The next frame queued for the connection, once there is one, or
    /// the kick. Cancel-safe: a frame is taken only when this returns it.
    pub async fn next(&self) -> Result<Outbound, Kicked> {
        loop {
            if self.is_kicked() {
                return Err(Kicked);
            }
            {
                let mut queue = self.queue();
                if let Some(item) = queue.pop_front() {
                    if queue.is_empty() && queue.capacity() > SPARE_QUEUE {
                        // After a burst, an idle connection gives back its room.
                        queue.shrink_to(SPARE_QUEUE);
                    }
                    return Ok(item);
                }
            }
            // A push or kick after the checks above leaves a permit: no
            // wakeup is lost.
            self.wake.notified().await;
        }
    }

    /// Resolves once the hub found the connection's queue full.
    pub async fn kicked(&self) {
        while !self.is_kicked() {
            self.wake.notified().await;
        }
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// While set, an overflow drops frames instead of disconnecting.
    pub fn set_replaying(&self, replaying: bool) {
        self.replaying.store(replaying, Ordering::Release);
    }

    /// Whether frames were dropped since the last call.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }
}

/// Queue slots an emptied queue keeps.
const SPARE_QUEUE: usize = 8;

struct Conn {
    user_id: Uuid,
    /// The connection's row in `connections` (agents only).
    record: Option<Uuid>,
    signals: Arc<ConnSignals>,
}

#[derive(Default)]
struct RoomFollowers {
    assignee: Option<Uuid>,
    conns: HashSet<ConnId>,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<Uuid, RoomFollowers>,
    by_user: HashMap<Uuid, Vec<ConnId>>,
    agents: HashSet<ConnId>,
}

/// Who a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// Connections following the room, but not `except_user`'s.
    Room {
        room_id: Uuid,
        except_user: Option<Uuid>,
    },
    /// A room's state changed: its followers, every agent, and the
    /// room's visitor wherever they are connected.
    RoomChange {
        room_id: Uuid,
        visitor_id: Uuid,
        assignee_id: Option<Uuid>,
    },
    /// An agent came online or went offline: every agent, and followers
    /// of the rooms assigned to them.
    Presence { staff_id: Uuid },
}

pub struct Hub {
    inner: RwLock<Inner>,
    next_id: AtomicU64,
    metrics: ChatMetrics,
}

impl Hub {
    pub fn new(metrics: ChatMetrics) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an authenticated connection.
    pub fn register(
        &self,
        user_id: Uuid,
        agent: bool,
        record: Option<Uuid>,
        queue_capacity: usize,
    ) -> (ConnId, Arc<ConnSignals>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(ConnSignals::new(queue_capacity));
        let mut inner = self.write();
        inner.conns.insert(
            id,
            Conn {
                user_id,
                record,
                signals: signals.clone(),
            },
        );
        inner.by_user.entry(user_id).or_default().push(id);
        if agent {
            inner.agents.insert(id);
        }
        (id, signals)
    }

    /// Removes a connection and everything it followed.
    pub fn unregister(&self, id: ConnId, following: impl IntoIterator<Item = Uuid>) {
        let mut inner = self.write();
        let Some(conn) = inner.conns.remove(&id) else {
            return;
        };
        inner.agents.remove(&id);
        if let Some(ids) = inner.by_user.get_mut(&conn.user_id) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                inner.by_user.remove(&conn.user_id);
            }
        }
        for room in following {
            remove_follower(&mut inner, room, id);
        }
    }

    pub fn follow(&self, id: ConnId, room_id: Uuid, assignee: Option<Uuid>) {
        let mut inner = self.write();
        let room = inner.rooms.entry(room_id).or_default();
        room.assignee = assignee;
        room.conns.insert(id);
    }

    pub fn unfollow(&self, id: ConnId, room_id: Uuid) {
        remove_follower(&mut self.write(), room_id, id);
    }

    /// The agent connections' records, for re-registering after this
    /// replica was taken for dead.
    pub fn agent_records(&self) -> Vec<(Uuid, Uuid)> {
        let inner = self.read();
        inner
            .agents
            .iter()
            .filter_map(|id| inner.conns.get(id))
            .filter_map(|conn| conn.record.map(|record| (record, conn.user_id)))
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }

    /// Hands `delivery` to each connection of `audience` on this replica.
    pub fn deliver(&self, audience: Audience, delivery: Delivery) {
        let delivery = Arc::new(delivery);
        let mut targets: Vec<ConnId> = Vec::new();
        {
            let needs_write = matches!(audience, Audience::RoomChange { .. });
            if needs_write {
                let mut inner = self.write();
                if let Audience::RoomChange {
                    room_id,
                    assignee_id,
                    ..
                } = audience
                {
                    if let Some(room) = inner.rooms.get_mut(&room_id) {
                        room.assignee = assignee_id;
                    }
                }
            }
            let inner = self.read();
            match audience {
                Audience::Room {
                    room_id,
                    except_user,
                } => {
                    if let Some(room) = inner.rooms.get(&room_id) {
                        targets.extend(room.conns.iter().copied().filter(|id| {
                            except_user.is_none()
                                || inner.conns.get(id).map(|conn| conn.user_id) != except_user
                        }));
                    }
                }
                Audience::RoomChange {
                    room_id,
                    visitor_id,
                    ..
                } => {
                    let mut set: HashSet<ConnId> = inner.agents.clone();
                    if let Some(room) = inner.rooms.get(&room_id) {
                        set.extend(room.conns.iter().copied());
                    }
                    if let Some(ids) = inner.by_user.get(&visitor_id) {
                        set.extend(ids.iter().copied());
                    }
                    targets.extend(set);
                }
                Audience::Presence { staff_id } => {
                    let mut set: HashSet<ConnId> = inner.agents.clone();
                    for room in inner.rooms.values() {
                        if room.assignee == Some(staff_id) {
                            set.extend(room.conns.iter().copied());
                        }
                    }
                    targets.extend(set);
                }
            }
            for id in &targets {
                if let Some(conn) = inner.conns.get(id) {
                    self.offer(conn, Outbound::Frame(delivery.clone()));
                }
            }
        }
        self.metrics.deliveries.inc_by(targets.len() as u64);
    }

    /// Asks every connection to fetch what it may have missed.
    pub fn resync_all(&self) {
        let inner = self.read();
        for conn in inner.conns.values() {
            // A full queue will see newer frames, and their gaps, anyway.
            let _ = conn.signals.push(Outbound::Resync);
        }
    }

    fn offer(&self, conn: &Conn, item: Outbound) {
        match conn.signals.push(item) {
            Ok(()) => {}
            Err(Full) => {
                if conn.signals.replaying.load(Ordering::Acquire) {
                    conn.signals.lagged.store(true, Ordering::Release);
                } else if !conn.signals.is_kicked() {
                    self.metrics.slow_readers.inc();
                    conn.signals.kick();
                }
            }
        }
    }
}

fn remove_follower(inner: &mut Inner, room_id: Uuid, id: ConnId) {
    if let Some(room) = inner.rooms.get_mut(&room_id) {
        room.conns.remove(&id);
        if room.conns.is_empty() {
            inner.rooms.remove(&room_id);
        }
    }
}
