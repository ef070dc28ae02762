//! HTTP clients for the tests: one request on a fresh connection
//! ([`get_fresh`]), a raw keep-alive [`Connection`], and the two constant
//! loads that run beside reloads and scales: [`Load`] (a fresh connection
//! per request) and [`KeepAliveLoad`] (one persistent connection per
//! client, as wrk, load balancers and most HTTP libraries use).
//!
//! Neither load ever retries: a request that fails is counted, with its
//! kind and when, and the client goes on with the next one. A client that
//! resends on a new connection hides exactly the failures a drain must not
//! cause (issue 16: our benchmark's client did, and we never saw them).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client waits for any read before it counts a timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A load runs until stopped, or five minutes at most, so a test that
/// forgets to stop it cannot hang forever.
const LOAD_LIMIT: Duration = Duration::from_secs(300);
/// How long a finishing load may run on to reach the requests it must have
/// answered.
const ENOUGH_LIMIT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 GET on a fresh connection to 127.0.0.1:`port`
/// (`Connection: close`); the status code and body.
pub fn get_fresh(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let response = Connection::open(port)?.request(path, true)?;
    Ok((response.status, response.body))
}

/// One HTTP response, as far as the tests care.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Whether the server said `Connection: close` (or ended the body by
    /// closing): the connection cannot carry another request.
    pub close: bool,
    /// The body, decoded from Content-Length, chunked or close-delimited.
    pub body: String,
}

/// One client connection to 127.0.0.1, kept open across requests.
pub struct Connection {
    /// The socket, buffered for reading (requests are written through it).
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects, with a read timeout of [`READ_TIMEOUT`].
    pub fn open(port: u16) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| std::io::Error::new(e.kind(), format!("connect: {e}")))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// Sends a keep-alive GET for `path` and reads its whole response.
    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.request(path, false)
    }

    /// Sends a keep-alive GET for `path`; [`Connection::receive`] reads the
    /// response (meanwhile the request is in flight).
    pub fn send(&mut self, path: &str) -> std::io::Result<()> {
        self.write_request(path, false)
    }

    /// Reads one whole response.
    pub fn receive(&mut self) -> std::io::Result<Response> {
        read_response(&mut self.reader)
    }

    /// Sends a GET for `path` (asking the server to close after it when
    /// `close`) and reads its whole response.
    fn request(&mut self, path: &str, close: bool) -> std::io::Result<Response> {
        self.write_request(path, close)?;
        self.receive()
    }

    fn write_request(&mut self, path: &str, close: bool) -> std::io::Result<()> {
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n"
        )
        .map_err(|e| std::io::Error::new(e.kind(), format!("send: {e}")))
    }

    /// Whether the server closes this (idle) connection within `limit`;
    /// `Err` if it sends anything instead.
    pub fn closed_within(&mut self, limit: Duration) -> std::io::Result<bool> {
        self.reader.get_ref().set_read_timeout(Some(limit))?;
        let mut byte = [0; 1];
        let read = self.reader.read(&mut byte);
        self.reader.get_ref().set_read_timeout(Some(READ_TIMEOUT))?;
        match read {
            Ok(0) => Ok(true),
            Ok(_) => Err(std::io::Error::other("the server sent bytes unasked")),
            Err(e) if is_timeout(&e) => Ok(false),
            // A reset closes it too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Reads one response: status line, headers, then the body framed by
/// Content-Length, chunked encoding, or the end of the connection.
fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let status_line = read_line(reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("not an HTTP status line: {status_line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("not a header: {line:?}")));
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse().map_err(|_| bad(format!("{line:?}")))?);
            }
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.split(',').any(|v| v.trim() == "close"),
            _ => {}
        }
    }
    let body = if status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        read_chunked(reader)?
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        close = true;
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok(Response {
        status,
        close,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body (chunk extensions and trailers skipped).
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(format!("not a chunk size: {line:?}")))?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

/// One line without its CRLF; the end of the stream is an error (the
/// response is incomplete).
fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A request that failed: what went wrong and when.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Since the load started.
    pub at: Duration,
    /// `refused`, `reset`, `closed` (EOF before a complete response),
    /// `timeout`, `HTTP 502`, ...
    pub kind: String,
    /// The error or the body.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {:.3?}: {}: {}", self.at, self.kind, self.detail)
    }
}

impl Failure {
    /// Classifies an I/O error the way a load-testing client reports it.
    fn from_error(at: Duration, e: &std::io::Error) -> Failure {
        use std::io::ErrorKind::*;
        let kind = match e.kind() {
            ConnectionRefused => "refused".to_string(),
            ConnectionReset | ConnectionAborted => "reset".to_string(),
            UnexpectedEof => "closed".to_string(),
            BrokenPipe => "broken pipe".to_string(),
            _ if is_timeout(e) => "timeout".to_string(),
            other => format!("{other:?}"),
        };
        Failure {
            at,
            kind,
            detail: e.to_string(),
        }
    }
}

/// The process that answered, when the body says (the services' and the
/// fixtures' JSON carries `instance` and `pid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Responder {
    /// `instance-N`.
    pub instance: String,
    /// Its pid.
    pub pid: u64,
}

impl Responder {
    fn from_body(body: &str) -> Option<Responder> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(Responder {
            instance: v["instance"].as_str()?.to_string(),
            pid: v["pid"].as_u64()?,
        })
    }
}

/// Answered requests per process, as the clients of one load see them.
type Served = Arc<Mutex<HashMap<Responder, u64>>>;

/// What a load's clients saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Every other request, in the order each client saw them.
    pub failures: Vec<Failure>,
    /// Answered requests per process that answered (when the body says).
    pub served: HashMap<Responder, u64>,
}

impl Outcome {
    /// Counts one request's result, `at` after the load started; who
    /// answered goes to `served`, shared by every client of the load.
    fn record(&mut self, at: Duration, result: &std::io::Result<Response>, served: &Served) {
        match result {
            Ok(r) if (200..300).contains(&r.status) => {
                self.ok += 1;
                if let Some(who) = Responder::from_body(&r.body) {
                    *served.lock().unwrap().entry(who).or_default() += 1;
                }
            }
            Ok(r) => self.failures.push(Failure {
                at,
                kind: format!("HTTP {}", r.status),
                detail: r.body.clone(),
            }),
            Err(e) => self.failures.push(Failure::from_error(at, e)),
        }
    }

    /// Adds another client's outcome to this one.
    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.failures.extend(other.failures);
    }

    /// Asserts that at least `at_least` requests succeeded and none failed
    /// (showing the first failures).
    fn assert_no_failures(&self, at_least: u64) {
        assert!(
            self.ok >= at_least,
            "the load ran: {} requests answered",
            self.ok
        );
        let shown: Vec<String> = self
            .failures
            .iter()
            .take(5)
            .map(|f| f.to_string())
            .collect();
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed: {shown:#?}",
            self.failures.len(),
            self.ok + self.failures.len() as u64,
        );
    }
}

/// Constant load: client threads that each send request after request
/// until stopped, recording every result. [`Load::start`] opens a fresh
/// connection per request; [`KeepAliveLoad::start`] keeps connections open.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Outcome>>,
    /// Requests answered 2xx so far, by every client.
    answered: Arc<AtomicU64>,
    /// Who answered so far (see [`Load::pids`]).
    served: Served,
}

impl Load {
    /// Starts `threads` clients sending fresh-connection GETs to `port`
    /// (`Connection: close`); every failure (refused, reset, non-2xx) is
    /// recorded.
    pub fn start(port: u16, path: &'static str, threads: usize) -> Load {
        Load::clients(
            threads,
            || (),
            move |()| Connection::open(port)?.request(path, true),
        )
    }

    /// Starts `threads` clients; each keeps a `state` of its own (made by
    /// `init`) and calls `request` with it until stopped.
    fn clients<S>(
        threads: usize,
        init: impl Fn() -> S,
        request: impl Fn(&mut S) -> std::io::Result<Response> + Clone + Send + 'static,
    ) -> Load
    where
        S: Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let served = Served::default();
        let started = Instant::now();
        let workers = (0..threads)
            .map(|_| {
                let (stop, served, answered) = (stop.clone(), served.clone(), answered.clone());
                let (request, mut state) = (request.clone(), init());
                std::thread::spawn(move || {
                    let mut outcome = Outcome::default();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
                        let result = request(&mut state);
                        let before = outcome.ok;
                        outcome.record(started.elapsed(), &result, &served);
                        answered.fetch_add(outcome.ok - before, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        Load {
            stop,
            workers,
            answered,
            served,
        }
    }

    /// The pids that have answered so far, while the load runs: wait until
    /// new instances are among them.
    pub fn pids(&self) -> HashSet<u64> {
        let served = self.served.lock().unwrap();
        served.keys().map(|who| who.pid).collect()
    }

    /// Stops the clients and asserts that at least `at_least` requests
    /// succeeded and none failed (showing the first failures); what they
    /// saw, for further checks. The clients run on until `at_least` were
    /// answered (for at most [`ENOUGH_LIMIT`]), so how many requests a
    /// busy machine answers while the test's operation runs does not count.
    pub fn finish_without_failures(self, at_least: u64) -> Outcome {
        let deadline = Instant::now() + ENOUGH_LIMIT;
        while self.answered.load(Ordering::Relaxed) < at_least && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let outcome = self.finish();
        outcome.assert_no_failures(at_least);
        outcome
    }

    /// Stops the clients and adds up what they saw.
    pub fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Outcome::default();
        for w in self.workers {
            total.merge(w.join().expect("load thread"));
        }
        total.served = std::mem::take(&mut self.served.lock().unwrap());
        total
    }
}

/// The keep-alive flavour of [`Load`].
pub struct KeepAliveLoad;

impl KeepAliveLoad {
    /// Starts `connections` clients, each on one persistent HTTP/1.1
    /// connection to `port`, sending request after request (as wrk does). A
    /// client opens a new connection only after a response that said
    /// `Connection: close` (the normal end of a connection) or after a
    /// failed request. A failure (refused, reset, closed before a complete
    /// response, timeout, non-2xx) is counted and never retried.
    pub fn start(port: u16, path: &'static str, connections: usize) -> Load {
        Load::clients(
            connections,
            || None,
            move |conn: &mut Option<Connection>| {
                let open = match conn {
                    Some(open) => open,
                    None => conn.insert(Connection::open(port)?),
                };
                let result = open.get(path);
                if !matches!(&result, Ok(r) if !r.close) {
                    *conn = None;
                }
                result
            },
        )
    }
}
