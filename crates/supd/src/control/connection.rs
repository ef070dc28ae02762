//! One control connection, from admission to hang-up, within the budget.
//!
//! [`Connections`] is the one owner of the table of open connections: it
//! admits a new one (evicting the quietest when the cap is reached) and
//! holds the byte budget. Each connection is its own task, so an idle or
//! slow client never delays another; it reads a frame as its bytes arrive
//! (an announced length costs nothing until sent, and every byte buffered
//! is charged to the budget), gives its memory back once the frame is
//! decoded, and is closed when a request takes longer than the idle
//! timeout to arrive. While a request runs, a `working` frame goes out
//! every second, so `supctl` can tell a long operation from a wedged daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supd_proto::frame::{frame_len, write_frame_async};
use supd_proto::{FrameError, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::budget::{self, Admission, Budget, Charge, Limits};
use crate::registry::Registry;

/// How often a running request tells its client it is still working: four
/// times within the shortest silence a client is likely to allow (1 s), so
/// a frame late by a scheduling hiccup is not taken for a wedged daemon.
const WORKING_EVERY: Duration = Duration::from_millis(250);
/// How long an error frame may take to leave before the connection is dropped.
const LAST_WORDS: Duration = Duration::from_secs(1);
/// A frame buffer this large is its own mapping (see
/// [`return_large_blocks`]); a smaller one above [`budget::CHUNK`] has the
/// allocator's free pages handed back when it is freed.
const TRIM_ABOVE: usize = 1 << 20;

/// The open connections and the budget they share.
pub struct Connections {
    limits: Limits,
    budget: Budget,
    /// When the table was made: peers' last activity is counted from it.
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    peers: HashMap<u64, Arc<Peer>>,
}

/// What the table knows of one connection, shared with its task.
struct Peer {
    /// Milliseconds since the table's epoch when it last sent a byte.
    heard_ms: AtomicU64,
    /// Running a request: never evicted then.
    busy: AtomicBool,
    /// Told when it must make room for a new connection.
    evicted: Notify,
    /// Told once its descriptor is closed, so the accept loop can wait for
    /// an evicted connection to be gone before it admits the next one (the
    /// cap counts descriptors, not table entries).
    closed: Notify,
}

/// A connection told to make room; [`Evicted::closed`] waits until it has.
pub struct Evicted(Arc<Peer>);

impl Evicted {
    /// Waits until the evicted connection's descriptor is closed, at most
    /// as long as its last words may take.
    pub async fn closed(self) {
        let _ = tokio::time::timeout(2 * LAST_WORDS, self.0.closed.notified()).await;
    }
}

/// A place in the table, left when dropped.
pub struct Admitted {
    id: u64,
    peer: Arc<Peer>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.table().peers.remove(&self.id);
        self.peer.closed.notify_one();
    }
}

impl Connections {
    /// An empty table under `limits`.
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            budget: Budget::new(limits.buffered),
            limits,
            epoch: Instant::now(),
            table: Mutex::default(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A place for a new connection (and the connection evicted to make
    /// room, if one was), or the refusal to send it.
    pub fn admit(self: &Arc<Self>) -> Result<(Admitted, Option<Evicted>), String> {
        let mut table = self.table();
        let open = table.peers.len();
        let quietest = budget::quietest(table.peers.iter().map(|(id, peer)| {
            let heard = peer.heard_ms.load(Ordering::Relaxed);
            (*id, peer.busy.load(Ordering::Relaxed), heard)
        }));
        let evicted = match budget::admit(open, self.limits.connections, quietest) {
            Admission::Admit => None,
            Admission::Evict(id) => table.peers.remove(&id).map(|peer| {
                peer.evicted.notify_one();
                Evicted(peer)
            }),
            Admission::Refuse => {
                return Err(budget::too_many_connections(open, self.limits.connections));
            }
        };
        let id = table.next_id;
        table.next_id += 1;
        let peer = Arc::new(Peer {
            heard_ms: AtomicU64::new(self.now_ms()),
            busy: AtomicBool::new(false),
            evicted: Notify::new(),
            closed: Notify::new(),
        });
        table.peers.insert(id, peer.clone());
        let admitted = Admitted {
            id,
            peer,
            connections: self.clone(),
        };
        Ok((admitted, evicted))
    }
}

/// Why no request came in.
enum Gone {
    /// The peer hung up between requests.
    Closed,
    /// Told to the peer before closing.
    Refused(String),
    /// Dropped without a word (a frame cut short, a transport error).
    Dropped(String),
}

/// Serves one admitted connection: request, response, until the peer hangs
/// up, falls silent, overspends, or must make room. A `kill` answered
/// successfully flips `shutdown`.
pub async fn serve(
    stream: UnixStream,
    admitted: Admitted,
    registry: Registry,
    shutdown: watch::Sender<bool>,
) {
    // The stream is closed when `converse` returns, before `admitted`
    // leaves the table and says so.
    converse(stream, &admitted, registry, shutdown).await;
}

/// The requests and answers of one connection; the stream is closed when
/// this returns.
async fn converse(
    mut stream: UnixStream,
    admitted: &Admitted,
    registry: Registry,
    shutdown: watch::Sender<bool>,
) {
    let connections = &admitted.connections;
    let peer = &admitted.peer;
    loop {
        peer.busy.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + connections.limits.idle;
        let received = tokio::select! {
            read = tokio::time::timeout_at(deadline, read_request(&mut stream, connections, peer)) => {
                read.unwrap_or_else(|_| Err(Gone::Refused(format!(
                    "closed: no complete request within {:?} (SUPD_CONTROL_IDLE_TIMEOUT)",
                    connections.limits.idle
                ))))
            }
            () = peer.evicted.notified() => Err(Gone::Refused(format!(
                "closed: this connection was the quietest of {} (the limit) when another came",
                connections.limits.connections
            ))),
        };
        peer.busy.store(true, Ordering::Relaxed);
        let response = match received {
            Ok(Ok(request)) => request,
            Ok(Err(message)) => {
                // Malformed: answered, and the connection stays usable.
                if write_frame_async(&mut stream, &Response::Error { message })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(Gone::Closed) => return,
            Err(Gone::Dropped(why)) => {
                tracing::debug!("control connection dropped: {why}");
                return;
            }
            Err(Gone::Refused(message)) => {
                tracing::debug!("control connection closed: {message}");
                last_words(&mut stream, message).await;
                return;
            }
        };
        let kill = matches!(response, Request::Kill);
        let (response, client_gone) = answer(&mut stream, &registry, response).await;
        let written = !client_gone && write_frame_async(&mut stream, &response).await.is_ok();
        // A kill that went through ends the daemon, whether or not its
        // client stayed to hear the answer.
        if kill && !matches!(response, Response::Error { .. }) {
            shutdown.send_replace(true);
            return;
        }
        if !written {
            return;
        }
    }
}

/// Writes one error frame, bounded in time (a client that reads nothing
/// cannot hold us), then the caller closes.
async fn last_words(stream: &mut UnixStream, message: String) {
    let reply = Response::Error { message };
    let _ = tokio::time::timeout(LAST_WORDS, write_frame_async(stream, &reply)).await;
    let _ = tokio::time::timeout(LAST_WORDS, stream.shutdown()).await;
}

/// Reads one frame, growing its buffer as bytes arrive and charging the
/// budget for it; then decodes it (a malformed one is `Ok(Err(why))`).
async fn read_request(
    stream: &mut UnixStream,
    connections: &Connections,
    peer: &Peer,
) -> Result<Result<Request, String>, Gone> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Gone::Closed),
        Err(e) => return Err(Gone::Dropped(e.to_string())),
    }
    let heard = || peer.heard_ms.store(connections.now_ms(), Ordering::Relaxed);
    heard();
    let len = match frame_len(header) {
        Ok(len) => len,
        Err(e @ FrameError::TooLarge(_)) => return Err(Gone::Refused(e.to_string())),
        Err(e) => return Err(Gone::Dropped(e.to_string())),
    };
    let mut charge = Charge::new(&connections.budget);
    let mut body = FrameBuf(Vec::new());
    let body = &mut body.0;
    while body.len() < len {
        if body.len() == body.capacity() {
            let to = budget::next_capacity(body.capacity(), len);
            charge
                .grow(budget::chargeable(body.capacity(), to))
                .map_err(Gone::Refused)?;
            body.reserve_exact(to - body.capacity());
        }
        let room = (body.capacity() - body.len()) as u64;
        match (&mut *stream).take(room).read_buf(body).await {
            Ok(0) => return Err(Gone::Dropped("the peer hung up mid-frame".into())),
            Ok(_) => heard(),
            Err(e) => return Err(Gone::Dropped(e.to_string())),
        }
    }
    Ok(serde_json::from_slice::<Request>(body).map_err(|e| format!("malformed request: {e}")))
}

/// A frame's buffer; past its first chunk, its memory goes back to the
/// system when dropped, so what a big or hostile frame took does not stay
/// with the daemon.
struct FrameBuf(Vec<u8>);

impl Drop for FrameBuf {
    fn drop(&mut self) {
        if self.0.capacity() > budget::CHUNK {
            drop(std::mem::take(&mut self.0));
            trim_heap();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free pages of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Makes the allocator give large blocks back to the system when they are
/// freed. glibc serves blocks above its mmap threshold with their own
/// mapping, unmapped on free, but after the first such free it raises the
/// threshold (up to 32 MiB) and its trim threshold with it: later 16 MiB
/// frames then come from its arenas and stay resident after they end.
/// Fixing the threshold keeps every block of 1 MiB or more its own mapping.
/// Call once at start, before threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, TRIM_ABOVE as i32);
    }
}

/// Elsewhere the allocator's own policy stands.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}

/// Runs one request in its own task (so it completes even if the client
/// goes away), writing its progress lines as they come and a `working`
/// frame every second. The response, and whether the client is gone.
async fn answer(
    stream: &mut UnixStream,
    registry: &Registry,
    request: Request,
) -> (Response, bool) {
    let (progress, mut steps) = mpsc::unbounded_channel();
    let registry = registry.clone();
    let mut task = tokio::spawn(async move { super::handle(&registry, request, &progress).await });
    let mut working = tokio::time::interval_at(Instant::now() + WORKING_EVERY, WORKING_EVERY);
    let mut gone = false;
    let response = loop {
        tokio::select! {
            Some(message) = steps.recv() => tell(stream, &mut gone, Response::Progress { message }).await,
            _ = working.tick() => tell(stream, &mut gone, Response::Working).await,
            done = &mut task => break done.unwrap_or_else(|e| Response::Error { message: format!("internal error: {e}") }),
        }
    };
    while let Ok(message) = steps.try_recv() {
        tell(stream, &mut gone, Response::Progress { message }).await;
    }
    (response, gone)
}

/// Writes `frame` unless the client is `gone`, noting whether it went.
async fn tell(stream: &mut UnixStream, gone: &mut bool, frame: Response) {
    if !*gone {
        *gone = write_frame_async(stream, &frame).await.is_err();
    }
}
