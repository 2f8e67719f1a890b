//! One multiplexed connection: many requests in flight from any number of
//! tasks, written together and answered in order.
//!
//! A single task owns the socket. It takes the requests queued since its
//! last write (one `write` for all of them), parses replies as they arrive
//! and hands each to the request at the head of the in-flight queue,
//! checking that the reply carries that request's opaque token. A caller
//! that gives up (its future dropped) only drops its reply slot; the reply
//! is read and discarded, and the connection lives on. A request's time
//! runs from the call, so waiting for a free in-flight slot counts. The
//! task keeps one timer: a request whose time is up fails alone with a
//! timeout, and stays in the queue (abandoned) until its late reply comes,
//! which is checked against its token and discarded, so one slow reply
//! fails only its own request. A server that sends no reply at all for
//! [`ABANDON_GRACE`] more closes the connection (everything in flight
//! fails).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::proto::{self, Code, Parsed, Reply};

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection had ended before the request was queued: nothing
    /// was sent, so another connection may take it.
    NotSent,
    /// The connection closed (refused, reset, EOF) before the reply came.
    Closed(String),
    /// No reply within the timeout.
    Timeout,
    /// The server answered with an error, or the stream desynchronised.
    Protocol(String),
}

/// How long after a request's deadline its caller stops waiting on its own
/// (see [`Conn::call`]).
const BACKSTOP_GRACE: Duration = Duration::from_millis(100);

/// How long past its deadline an abandoned request's reply may still come
/// before the connection is given up.
pub(crate) const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// How a connection ended, for the server's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Closed while nothing was in flight (server restart, idle timeout, or
    /// the store dropped): replace it quietly.
    Idle,
    /// Closed by the server or the network with requests in flight.
    Broken(String),
    /// The oldest request timed out.
    TimedOut,
    /// The server sent something that is no reply to what was asked.
    Desync(String),
}

/// A request queued on a connection: its bytes (with opaque token) and
/// where its reply goes.
pub(crate) struct Request {
    pub(crate) bytes: Vec<u8>,
    pub(crate) opaque: u32,
    /// When the caller stops waiting (its call time plus the timeout).
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<Reply, Failure>>,
}

/// What the connection reports to its server's health.
pub(crate) trait Health: Send + Sync + 'static {
    /// A reply came in time.
    fn answered(&self);
    /// A request's time ran out before its reply.
    fn timed_out(&self);
}

/// The handle callers queue requests through. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Conn {
    queue: mpsc::Sender<Request>,
    opaque: Arc<AtomicU32>,
    op_timeout: Duration,
}

impl Conn {
    /// Starts the task that drives `stream` (at most `limits.0` requests
    /// in flight, each allowed `limits.1`); `on_end` runs once when the
    /// connection ends, and `health` hears of each reply and timeout.
    pub(crate) fn spawn(
        stream: TcpStream,
        limits: (usize, Duration),
        health: impl Health,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> Conn {
        let (max_in_flight, op_timeout) = limits;
        let (queue, rx) = mpsc::channel(max_in_flight);
        tokio::spawn(async move {
            let mut in_flight = VecDeque::new();
            let (ended, failure) = drive(stream, rx, &mut in_flight, max_in_flight, &health).await;
            // Health first, so a caller that sees its failure also sees the
            // server marked down.
            on_end(ended);
            for request in in_flight {
                request.answer(Err(failure.clone()));
            }
        });
        Conn {
            queue,
            opaque: Arc::new(AtomicU32::new(0)),
            op_timeout,
        }
    }

    /// Whether the connection's task has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Sends the command that `encode` appends (given the opaque token to
    /// put in it) and waits for its reply.
    pub(crate) async fn call(&self, encode: impl Fn(&mut Vec<u8>, u32)) -> Result<Reply, Failure> {
        let opaque = self.opaque.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(128);
        encode(&mut bytes, opaque);
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.op_timeout;
        let request = Request {
            bytes,
            opaque,
            deadline,
            reply,
        };
        // A full queue is back-pressure: wait for room, within the
        // request's time (nothing is sent if it runs out).
        match self.queue.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                match tokio::time::timeout_at(deadline, self.queue.send(request)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Failure::NotSent),
                    Err(_) => return Err(Failure::Timeout),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Failure::NotSent),
        }
        // The task fails a request in flight at its deadline; one still in
        // the queue (the connection full of late replies) is given up here,
        // and the task skips it unsent when it gets to it.
        // A little after the deadline, so that for a request in flight the
        // task's own timeout (which counts it against the server's health
        // first) is the one that answers.
        match tokio::time::timeout_at(deadline + BACKSTOP_GRACE, answer).await {
            Ok(answered) => {
                answered.unwrap_or_else(|_| Err(Failure::Closed("connection closed".into())))
            }
            Err(_) => Err(Failure::Timeout),
        }
    }
}

struct InFlight {
    opaque: u32,
    deadline: Instant,
    /// `None` once the request was failed with a timeout: its late reply
    /// is read and discarded.
    reply: Option<oneshot::Sender<Result<Reply, Failure>>>,
}

impl InFlight {
    /// When the timer must next look at this request.
    fn due(&self) -> Instant {
        match self.reply {
            Some(_) => self.deadline,
            None => self.deadline + ABANDON_GRACE,
        }
    }

    fn answer(self, result: Result<Reply, Failure>) {
        if let Some(reply) = self.reply {
            // A dropped receiver is a cancelled caller: nothing to do.
            let _ = reply.send(result);
        }
    }
}

/// Most bytes written in one go; more queued requests wait for the next.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The connection closed: quietly when nothing was in flight or queued.
fn closed(
    served: bool,
    in_flight: &mut VecDeque<InFlight>,
    queue: &mut mpsc::Receiver<Request>,
    why: String,
) -> (Ended, Failure) {
    // Requests queued but not yet written fail with the rest, and count.
    let now = Instant::now();
    while let Ok(request) = queue.try_recv() {
        in_flight.push_back(InFlight {
            opaque: request.opaque,
            deadline: now,
            reply: Some(request.reply),
        });
    }
    let failure = Failure::Closed(why.clone());
    // A connection closed before it answered anything is a server that
    // accepts and drops connections, not an idle connection timing out.
    if in_flight.is_empty() && served {
        (Ended::Idle, failure)
    } else {
        (Ended::Broken(why), failure)
    }
}

fn desync(why: String) -> (Ended, Failure) {
    (Ended::Desync(why.clone()), Failure::Protocol(why))
}

/// Runs the connection until it ends; returns how, and the failure for the
/// requests left in `in_flight`.
async fn drive(
    stream: TcpStream,
    mut queue: mpsc::Receiver<Request>,
    in_flight: &mut VecDeque<InFlight>,
    max_in_flight: usize,
    health: &impl Health,
) -> (Ended, Failure) {
    let (mut reader, mut writer) = stream.into_split();
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut written = 0usize;
    let mut input: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut parsed_to = 0usize;
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed_for: Option<Instant> = None;
    let mut queue_open = true;
    let mut served = false;

    loop {
        if !queue_open && in_flight.is_empty() && written == out.len() {
            // The store dropped every handle and nothing is outstanding.
            return (Ended::Idle, Failure::Closed("connection closed".into()));
        }
        // One timer for the connection, armed for the first request that
        // is waited for, or the oldest abandoned one's grace.
        let due = in_flight
            .iter()
            .find(|r| r.reply.is_some())
            .map(InFlight::due)
            .into_iter()
            .chain(in_flight.front().map(InFlight::due))
            .min();
        if let Some(due) = due {
            if armed_for != Some(due) {
                timer.as_mut().reset(due);
                armed_for = Some(due);
            }
        }
        let room = in_flight.len() < max_in_flight && out.len() < MAX_BATCH_BYTES;
        tokio::select! {
            biased;
            read = reader.read_buf(&mut input) => {
                match read {
                    Ok(0) => {
                        let why = "connection closed by the server".to_owned();
                        return closed(served, in_flight, &mut queue, why);
                    }
                    Ok(_) => {}
                    Err(e) => return closed(served, in_flight, &mut queue, e.to_string()),
                }
                loop {
                    match proto::parse(&input[parsed_to..]) {
                        Ok(Parsed::Incomplete) => break,
                        Ok(Parsed::Reply(reply, used)) => {
                            parsed_to += used;
                            let Some(request) = in_flight.pop_front() else {
                                return desync("a reply nobody asked for".into());
                            };
                            // `MN` carries no token; everything else must.
                            if reply.code != Code::Noop && reply.opaque != Some(request.opaque) {
                                let why = format!(
                                    "reply for opaque {:?} where {} was expected",
                                    reply.opaque, request.opaque
                                );
                                request.answer(Err(Failure::Protocol(why.clone())));
                                return desync(why);
                            }
                            served = true;
                            // A late reply to a request already failed
                            // with a timeout says nothing good of the
                            // server's health.
                            if request.reply.is_some() {
                                health.answered();
                            }
                            request.answer(Ok(reply));
                        }
                        Ok(Parsed::ServerError(message, used)) => {
                            parsed_to += used;
                            let Some(request) = in_flight.pop_front() else {
                                return desync("a reply nobody asked for".into());
                            };
                            if request.reply.is_some() {
                                health.answered();
                            }
                            request.answer(Err(Failure::Protocol(message)));
                        }
                        Err(error) => return desync(error.0),
                    }
                }
                if parsed_to == input.len() {
                    input.clear();
                    parsed_to = 0;
                } else if parsed_to > input.capacity() / 2 {
                    input.drain(..parsed_to);
                    parsed_to = 0;
                }
            }
            result = writer.write(&out[written..]), if written < out.len() => {
                match result {
                    Ok(n) => {
                        written += n;
                        if written == out.len() {
                            out.clear();
                            written = 0;
                        }
                    }
                    Err(e) => return closed(served, in_flight, &mut queue, e.to_string()),
                }
            }
            request = queue.recv(), if queue_open && room => {
                let Some(request) = request else {
                    queue_open = false;
                    continue;
                };
                // Take everything queued meanwhile: one write for all of it.
                let mut next = Some(request);
                for round in 0..2 {
                    while let Some(request) = next.take() {
                        if request.deadline <= Instant::now() {
                            // Its caller stopped waiting: not sent at all
                            // (and, never sent, it says nothing of the
                            // server's health).
                            let _ = request.reply.send(Err(Failure::Timeout));
                            next = queue.try_recv().ok();
                            continue;
                        }
                        out.extend_from_slice(&request.bytes);
                        in_flight.push_back(InFlight {
                            opaque: request.opaque,
                            deadline: request.deadline,
                            reply: Some(request.reply),
                        });
                        if in_flight.len() < max_in_flight && out.len() < MAX_BATCH_BYTES {
                            next = queue.try_recv().ok();
                        }
                    }
                    if round == 0 {
                        // One scheduling round before writing: requests woken
                        // with this task queue their commands meanwhile, and
                        // go out in the same write (measured: fewer writes
                        // per request under load).
                        tokio::task::yield_now().await;
                        next = queue.try_recv().ok();
                    }
                }
            }
            () = &mut timer, if !in_flight.is_empty() => {
                let now = Instant::now();
                // No reply at all, even late: the server is stuck, or the
                // stream lost; give the connection up.
                if in_flight.front().is_some_and(|f| f.reply.is_none() && f.due() <= now) {
                    return (Ended::TimedOut, Failure::Timeout);
                }
                // Requests whose time is up fail alone; the connection
                // waits for their replies to discard them.
                for request in in_flight.iter_mut() {
                    if request.deadline > now {
                        break;
                    }
                    if let Some(reply) = request.reply.take() {
                        health.timed_out();
                        let _ = reply.send(Err(Failure::Timeout));
                    }
                }
                armed_for = None;
            }
        }
    }
}
