//! One memcached server: its connections, its health, and the prober that
//! brings it back.
//!
//! Health is one atomic state per server, changed by what the connections
//! see, never by a timer of the request path:
//! - connection refused, reset or closed with requests in flight: down at
//!   once (the requests in flight fail);
//! - timeouts at a rate: three in a row, or a quarter of the last 32
//!   requests (a reply that comes late counts as a timeout, not as an
//!   answer), so a server that answers slowly is marked down too;
//! - no reply at all, even late, for a while past a request's timeout:
//!   down;
//! - while down, requests fail at once (no connection attempt) and one
//!   background prober per server connects and sends `mn` every ~250 ms
//!   (±20 % jitter, slowing to 800 ms during long outages); its first success
//!   puts the server back, its connection first in service.
//!
//! A connection the server closed while idle is replaced by the next request
//! without an error.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use session_core::StoreError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::{Conn, Ended, Failure, Health};
use super::proto::{self, Reply};
use super::Credentials;

/// Timeouts in a row that mark a server down.
const TIMEOUTS_IN_A_ROW: u32 = 3;
/// Timeouts among the last [`WINDOW`] requests that mark a server down.
const TIMEOUTS_IN_WINDOW: u32 = 8;
const WINDOW: u32 = 32;
/// First and longest pause between probes of a down server; with ±20 %
/// jitter the longest stays under a second, so a server is back within a
/// second of accepting connections however long it was down.
const PROBE_FIRST: Duration = Duration::from_millis(250);
const PROBE_MAX: Duration = Duration::from_millis(800);

/// How the store reaches a server.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connections: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) credentials: Option<Credentials>,
}

pub(crate) struct Server {
    pub(crate) addr: String,
    settings: Settings,
    slots: Vec<Slot>,
    next_slot: AtomicUsize,
    down: AtomicBool,
    /// The last [`WINDOW`] requests' outcomes, newest in the lowest bit
    /// (1: timed out).
    outcomes: AtomicU64,
    probing: AtomicBool,
    /// Itself, for the tasks it spawns (they must not keep it alive).
    this: Weak<Server>,
}

struct Slot {
    conn: Mutex<Option<Conn>>,
    /// Held while connecting, so concurrent requests make one attempt.
    connecting: tokio::sync::Mutex<()>,
}

impl Server {
    pub(crate) fn new(addr: String, settings: Settings) -> Arc<Server> {
        Arc::new_cyclic(|this| Server {
            addr,
            slots: (0..settings.connections)
                .map(|_| Slot {
                    conn: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            settings,
            next_slot: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            outcomes: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            this: this.clone(),
        })
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn unavailable(&self, why: &str) -> StoreError {
        StoreError::Unavailable(format!("memcached {}: {why}", self.addr))
    }

    /// Sends one command and waits for its reply.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server is down or the connection
    /// fails, [`StoreError::Timeout`] when no reply comes in time,
    /// [`StoreError::Backend`] when the server answers with an error.
    pub(crate) async fn call(
        &self,
        encode: impl Fn(&mut Vec<u8>, u32),
    ) -> Result<Reply, StoreError> {
        if self.is_down() {
            return Err(self.unavailable("marked down; a prober is checking it"));
        }
        let conn = self.conn().await?;
        let mut result = conn.call(&encode).await;
        if result == Err(Failure::NotSent) {
            // The connection ended (closed by the server while idle) between
            // the check and the queueing: nothing was sent, so a fresh one
            // takes the request and no caller sees the replacement.
            result = self.conn().await?.call(&encode).await;
        }
        result.map_err(|failure| match failure {
            Failure::NotSent => self.unavailable("connection closed"),
            Failure::Closed(why) => self.unavailable(&why),
            Failure::Timeout => StoreError::Timeout(self.settings.op_timeout),
            Failure::Protocol(why) => {
                StoreError::Backend(format!("memcached {}: {why}", self.addr))
            }
        })
    }

    /// A live connection, opening one when the slot's is closed.
    async fn conn(&self) -> Result<Conn, StoreError> {
        let index = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(conn) = live(&slot.conn) {
            return Ok(conn);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = live(&slot.conn) {
            return Ok(conn);
        }
        if self.is_down() {
            return Err(self.unavailable("marked down; a prober is checking it"));
        }
        match self.open().await {
            Ok(conn) => {
                *lock(&slot.conn) = Some(conn.clone());
                Ok(conn)
            }
            Err(why) => {
                self.mark_down(&why);
                Err(self.unavailable(&why))
            }
        }
    }

    /// Connects, authenticates, and starts the connection's task.
    async fn open(&self) -> Result<Conn, String> {
        let stream = connect(&self.addr, &self.settings).await?;
        let on_end = {
            let this = self.this.clone();
            move |ended: Ended| {
                if let Some(server) = this.upgrade() {
                    server.connection_ended(ended);
                }
            }
        };
        Ok(Conn::spawn(
            stream,
            (self.settings.max_in_flight, self.settings.op_timeout),
            ServerHealth(self.this.clone()),
            on_end,
        ))
    }

    fn connection_ended(&self, ended: Ended) {
        match ended {
            Ended::Idle => {
                tracing::debug!(server = %self.addr, "idle memcached connection closed; the next request opens another")
            }
            Ended::Broken(why) => self.mark_down(&why),
            Ended::TimedOut => {
                self.mark_down("no reply, even late; connection closed");
            }
            Ended::Desync(why) => {
                tracing::error!(server = %self.addr, error = %why, "memcached connection out of step; closed")
            }
        }
    }

    /// Marks the server down (once) and starts its prober.
    fn mark_down(&self, why: &str) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(server = %self.addr, error = why, "memcached server marked down");
        for slot in &self.slots {
            lock(&slot.conn).take();
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            tokio::spawn(probe(self.this.clone()));
        }
    }

    /// Records one request's outcome; marks the server down when timeouts
    /// come at the rate that says it is not keeping up.
    fn record(&self, timed_out: bool) {
        let mask = (1u64 << WINDOW) - 1;
        let shift = |o: u64| ((o << 1) | u64::from(timed_out)) & mask;
        let Ok(before) = self
            .outcomes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| Some(shift(o)))
        else {
            return;
        };
        if !timed_out {
            return;
        }
        let outcomes = shift(before);
        let in_a_row = (outcomes.trailing_ones()).min(WINDOW);
        let in_window = outcomes.count_ones();
        tracing::warn!(server = %self.addr, timeouts_in_a_row = in_a_row, timeouts_in_window = in_window, "memcached command timed out");
        if in_a_row >= TIMEOUTS_IN_A_ROW || in_window >= TIMEOUTS_IN_WINDOW {
            self.mark_down("timeouts at a rate: too slow to serve");
        }
    }

    fn mark_up(&self, conn: Conn) {
        self.outcomes.store(0, Ordering::Relaxed);
        *lock(&self.slots[0].conn) = Some(conn);
        self.down.store(false, Ordering::Release);
        tracing::info!(server = %self.addr, "memcached server is back");
    }
}

/// A connection's reports on its server's health (weak: connections must
/// not keep their server alive).
struct ServerHealth(Weak<Server>);

impl Health for ServerHealth {
    fn answered(&self) {
        if let Some(server) = self.0.upgrade() {
            server.record(false);
        }
    }

    fn timed_out(&self) {
        if let Some(server) = self.0.upgrade() {
            server.record(true);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn live(slot: &Mutex<Option<Conn>>) -> Option<Conn> {
    lock(slot).as_ref().filter(|c| !c.is_closed()).cloned()
}

/// Opens a TCP connection (IPv4 or IPv6, names resolved) and authenticates.
async fn connect(addr: &str, settings: &Settings) -> Result<TcpStream, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        if let Some(c) = &settings.credentials {
            let mut out = Vec::new();
            proto::auth(&mut out, &c.user, &c.password);
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            let line = read_line(&mut stream).await?;
            if line != "STORED" {
                return Err("authentication refused".to_owned());
            }
        }
        Ok(stream)
    };
    tokio::time::timeout(settings.connect_timeout, attempt)
        .await
        .map_err(|_| "connect timed out".to_owned())?
}

/// Reads one short reply line, before the connection is multiplexed.
async fn read_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 256 || stream.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed during the handshake".to_owned());
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Checks a down server until it answers, then puts it back.
async fn probe(server: Weak<Server>) {
    let mut pause = PROBE_FIRST;
    loop {
        tokio::time::sleep(crate::sweeper::jitter(pause)).await;
        let Some(this) = server.upgrade() else { return };
        match check(&this).await {
            Ok(conn) => {
                this.probing.store(false, Ordering::Release);
                this.mark_up(conn);
                return;
            }
            Err(why) => {
                tracing::debug!(server = %this.addr, error = %why, "memcached still down");
                pause = (pause * 3 / 2).min(PROBE_MAX);
            }
        }
    }
}

/// One probe: connect, authenticate, and a `mn` answered in time. The
/// connection then serves requests.
async fn check(server: &Server) -> Result<Conn, String> {
    let conn = server.open().await?;
    let answered = conn
        .call(|out, _| proto::noop(out))
        .await
        .map_err(|f| format!("{f:?}"))?;
    if answered.code != proto::Code::Noop {
        return Err("unexpected answer to mn".to_owned());
    }
    Ok(conn)
}
