//! The six stand-in services, each run as its real binary on a free port of
//! 127.0.0.1: the kit every service shares (health, socket activation on
//! fd 3, readiness, graceful stop) and the checklist of the deployment they
//! stand in for (distinct device ports, a payment applied once, expiry,
//! WebSocket delivery, uploads, tokens, gateway routing).

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{KillOnDrop, bin, free_port, wait_for};

/// How long a service may take to start answering.
const START: Duration = Duration::from_secs(15);

/// Environment a service must not inherit from whatever runs the tests
/// (possibly supd itself, or PM2).
const SCRUBBED: &[&str] = &[
    "PORT",
    "HOST",
    "INSTANCE_ID",
    "NODE_APP_INSTANCE",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "SERVICE_DEBUG_ROUTES",
    "JWT_SECRET",
    "APP_STORAGE_DIR",
    "USER_SERVICE_URL",
    "DEVICE_SERVICE_URL",
    "APP_SERVICE_URL",
    "BILLING_SERVICE_URL",
    "NOTIFICATION_SERVICE_URL",
];

// ---------------------------------------------------------------- launching

/// How to start one service.
struct Launch {
    /// Binary name.
    name: &'static str,
    /// Extra environment.
    env: Vec<(String, String)>,
    /// A listening socket to hand over on fd 3 (instead of `PORT`).
    listener: Option<TcpListener>,
    /// Whether to wait for `/health` before returning.
    wait: bool,
}

/// A running service: killed when dropped, its output in a file.
struct Running {
    proc: KillOnDrop,
    name: &'static str,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Launch {
    fn new(name: &'static str) -> Self {
        Launch {
            name,
            env: Vec::new(),
            listener: None,
            wait: true,
        }
    }

    fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// Hand `listener` over on fd 3 with `LISTEN_FDS=1` and `LISTEN_PID`
    /// set to the service's own pid.
    fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    fn start(self) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let out = fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let exe = bin(self.name);

        let mut cmd = match &self.listener {
            // LISTEN_PID must be the service's pid, known only after fork: a
            // shell exports its own pid, then execs (keeping the pid).
            Some(_) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg("export LISTEN_PID=$$; exec \"$0\"")
                    .arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        for key in SCRUBBED {
            cmd.env_remove(key);
        }
        let port = match &self.listener {
            Some(listener) => {
                cmd.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", self.name);
                let fd = listener.as_raw_fd();
                // SAFETY: dup2 and fcntl are async-signal-safe; nothing is
                // allocated between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        // dup2 leaves the copy without close-on-exec; a
                        // listener already on fd 3 needs the flag cleared.
                        let rc = if fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0)
                        } else {
                            libc::dup2(fd, 3)
                        };
                        if rc < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            Ok(())
                        }
                    });
                }
                listener.local_addr().expect("listener addr").port()
            }
            None => {
                let port = free_port();
                cmd.env("PORT", port.to_string());
                port
            }
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        // The listener now lives on in the child; ours can go.
        drop(self.listener);

        let mut running = Running {
            proc: KillOnDrop(child),
            name: self.name,
            port,
            log,
            _dir: dir,
        };
        if self.wait {
            running.wait_healthy();
        }
        running
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health` until it answers 200, failing early (with the log)
    /// if the process exits.
    fn wait_healthy(&mut self) -> Value {
        let what = format!("{} /health on port {}", self.name, self.port);
        wait_for(START, &what, || {
            if let Ok(Some(status)) = self.proc.0.try_wait() {
                panic!("{} exited early ({status}):\n{}", self.name, self.log());
            }
            let reply = try_send("GET", &self.url("/health"), &[], None).ok()?;
            (reply.status == 200).then(|| reply.json())
        })
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&self, needle: &str) {
        wait_for(
            Duration::from_secs(10),
            &format!("{needle:?} in the {} log", self.name),
            || self.log().contains(needle).then_some(()),
        );
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("kill");
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait_for(Duration::from_secs(10), &what, || {
            self.proc.0.try_wait().expect("try_wait")
        })
    }
}

// ---------------------------------------------------------------- requests

/// An HTTP answer, read whole.
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a fresh connection (a new agent has an empty pool), any
/// status accepted.
fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Reply, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = match body {
        Some(body) => agent.run(request.body(body).expect("request"))?,
        None => agent.run(request.body(()).expect("request"))?,
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
    try_send(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn get(url: &str) -> Reply {
    send("GET", url, &[], None)
}

fn post_json(url: &str, body: &Value) -> Reply {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(body.to_string().into_bytes()),
    )
}

fn post_form(url: &str, form: &str) -> Reply {
    send(
        "POST",
        url,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes().to_vec()),
    )
}

// ---------------------------------------------------------------- the kit

const ALL: &[&str] = &[
    "api-gateway",
    "user-service",
    "device-service",
    "app-service",
    "billing-service",
    "notification-service",
];

#[test]
fn every_service_reports_health_and_stops_cleanly_on_sigint_or_sigterm() {
    let mut running: Vec<Running> = ALL
        .iter()
        .enumerate()
        .map(|(n, name)| Launch::new(name).env("INSTANCE_ID", n + 1).start())
        .collect();
    for (n, service) in running.iter().enumerate() {
        let health = get(&service.url("/health")).json();
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["service"], service.name, "{health}");
        assert_eq!(
            health["instance"],
            format!("instance-{}", n + 1),
            "{health}"
        );
        assert_eq!(health["pid"], service.pid(), "{health}");
        assert!(
            service.log().contains(&format!(
                "{} listening on 127.0.0.1:{}",
                service.name, service.port
            )),
            "{}",
            service.log()
        );
    }
    for (n, service) in running.iter_mut().enumerate() {
        service.signal(if n % 2 == 0 {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        });
        let status = service.wait_exit();
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            service.name,
            service.log()
        );
        assert!(service.log().contains(&format!("{} stopped", service.name)));
    }
}

#[test]
fn instance_falls_back_to_node_app_instance() {
    let service = Launch::new("user-service")
        .env("NODE_APP_INSTANCE", 7)
        .start();
    assert_eq!(
        get(&service.url("/health")).json()["instance"],
        "instance-7"
    );
    let service = Launch::new("user-service").start();
    assert_eq!(
        get(&service.url("/health")).json()["instance"],
        "instance-0"
    );
}

#[test]
fn takes_the_listener_from_fd_3_and_sends_ready_once_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(START)).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let unused_port = free_port();
    let mut service = Launch::new("device-service")
        .listener(listener)
        .env("PORT", unused_port) // must be ignored: fd 3 wins
        .env("INSTANCE_ID", 2)
        .env("NOTIFY_SOCKET", notify_path.display())
        .no_wait()
        .start();

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("a datagram on NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"READY=1");
    // READY=1 means "accepting": no polling allowed here.
    let health = get(&service.url("/health")).json();
    assert_eq!(health["instance"], "instance-2");
    assert_eq!(health["pid"], service.pid());
    assert!(
        service.log().contains("socket from the supervisor on fd 3"),
        "{}",
        service.log()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", unused_port)).is_err(),
        "PORT was bound too"
    );

    service.signal(Signal::SIGTERM);
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(service.wait_exit().success());
}

#[test]
fn ready_goes_to_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("supd-services-test-{}-{}", std::process::id(), free_port());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = UnixDatagram::bind_addr(&addr).unwrap();
    notify.set_read_timeout(Some(START)).unwrap();

    let _service = Launch::new("billing-service")
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .no_wait()
        .start();
    let mut buf = [0u8; 64];
    let n = notify
        .recv(&mut buf)
        .expect("READY=1 on the abstract socket");
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn listen_fds_meant_for_another_pid_are_ignored() {
    // LISTEN_PID=1 is never us: the variables describe someone else's fds.
    let service = Launch::new("app-service")
        .env("LISTEN_FDS", 1)
        .env("LISTEN_PID", 1)
        .start();
    assert!(
        service.log().contains("socket bound here"),
        "{}",
        service.log()
    );
}

#[test]
fn sigterm_drains_an_in_flight_request_and_exits_0() {
    let mut service = Launch::new("device-service")
        .env("SERVICE_DEBUG_ROUTES", 1)
        .start();
    let url = service.url("/debug/slow?ms=1500");
    let slow = std::thread::spawn(move || send("GET", &url, &[], None));
    service.wait_log("debug: slow request started");

    service.signal(Signal::SIGTERM);
    service.wait_log("received SIGTERM");
    let reply = slow.join().expect("slow request thread");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["slept_ms"], 1500);
    let status = service.wait_exit();
    assert!(status.success(), "exited with {status}:\n{}", service.log());
    assert!(
        TcpStream::connect(("127.0.0.1", service.port)).is_err(),
        "still accepting"
    );
}

#[test]
fn debug_routes_are_off_by_default() {
    let service = Launch::new("device-service").start();
    assert_eq!(get(&service.url("/debug/slow?ms=1")).status, 404);
    assert_eq!(
        get(&service.url("/no/such/route")).json()["error"],
        "no such route"
    );
}

#[test]
fn cluster_instances_sharing_one_socket_all_serve() {
    // What supd does in cluster mode: one listening socket, on fd 3 of every
    // instance. Fresh connections must reach both.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = Launch::new("api-gateway")
        .listener(listener.try_clone().unwrap())
        .env("INSTANCE_ID", 0)
        .no_wait()
        .start();
    let _b = Launch::new("api-gateway")
        .listener(listener)
        .env("INSTANCE_ID", 1)
        .no_wait()
        .start();
    let mut seen = std::collections::BTreeSet::new();
    wait_for(
        Duration::from_secs(20),
        "both gateway instances to answer",
        || {
            if let Ok(reply) = try_send("GET", &a.url("/"), &[], None) {
                seen.insert(reply.json()["instance"].as_str().unwrap().to_owned());
            }
            (seen.len() == 2).then_some(())
        },
    );
}

// ---------------------------------------------------------------- services

#[test]
fn devices_get_distinct_ports_and_the_allocation_is_logged() {
    let service = Launch::new("device-service").start();
    let mut ids = Vec::new();
    for (i, name) in ["pixel", "galaxy", "xperia"].iter().enumerate() {
        let reply = post_json(
            &service.url("/devices"),
            &json!({ "userId": "u1", "name": name }),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        let device = reply.json();
        let offset = u16::try_from(i).unwrap();
        assert_eq!(device["adbPort"], 5555 + offset, "{device}");
        assert_eq!(device["webrtcPort"], 8080 + offset, "{device}");
        ids.push(device["id"].as_str().unwrap().to_owned());
    }
    for line in [
        "Allocated ports: ADB=5555, WebRTC=8080\n",
        "Allocated ports: ADB=5556, WebRTC=8081\n",
        "Allocated ports: ADB=5557, WebRTC=8082\n",
    ] {
        assert!(
            service.log().contains(line),
            "{line:?} missing from:\n{}",
            service.log()
        );
    }

    let device = get(&service.url(&format!("/devices/{}", ids[1]))).json();
    assert_eq!(device["adbPort"], 5556);
    assert_eq!(device["userId"], "u1");
    assert_eq!(
        send(
            "DELETE",
            &service.url(&format!("/devices/{}", ids[1])),
            &[],
            None
        )
        .status,
        204
    );
    assert_eq!(
        get(&service.url(&format!("/devices/{}", ids[1]))).status,
        404
    );
    // The released pair is the lowest free one again.
    let device = post_json(
        &service.url("/devices"),
        &json!({ "userId": "u2", "name": "new" }),
    )
    .json();
    assert_eq!(
        (device["adbPort"].as_u64(), device["webrtcPort"].as_u64()),
        (Some(5556), Some(8081))
    );
    assert_eq!(
        get(&service.url("/devices?userId=u2"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let bad = send(
        "POST",
        &service.url("/devices"),
        &[("content-type", "application/json")],
        Some(b"{nope".to_vec()),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"].as_str().unwrap().contains("JSON"));
    assert_eq!(
        post_json(&service.url("/devices"), &json!({ "name": "no user" })).status,
        400
    );
    assert_eq!(
        post_json(
            &service.url("/devices"),
            &json!({ "userId": "", "name": "x" })
        )
        .status,
        400
    );
}

#[test]
fn a_payment_callback_sent_twice_pays_once() {
    let service = Launch::new("billing-service").start();
    let reply = post_json(&service.url("/orders"), &json!({ "amount": 10 }));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let order = reply.json();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["amount"], 10);
    let id = order["id"].as_str().unwrap();

    let first = post_form(
        &service.url("/webhooks/payment"),
        &format!("orderId={id}&status=paid"),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["applied"], true);
    let second = post_form(
        &service.url("/webhooks/payment"),
        &format!("orderId={id}&status=paid"),
    );
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.json()["applied"], false);

    let order = get(&service.url(&format!("/orders/{id}"))).json();
    assert_eq!(order["status"], "PAID", "{order}");
    assert_eq!(order["applied_payments"], 1, "{order}");
    assert!(
        service.log().contains("Duplicate payment callback ignored"),
        "{}",
        service.log()
    );

    // No body at all is a valid order too; unknown orders are 404.
    let empty = send("POST", &service.url("/orders"), &[], Some(Vec::new()));
    assert_eq!(empty.status, 201, "{}", empty.body);
    assert_eq!(get(&service.url("/orders/nope")).status, 404);
    assert_eq!(
        post_form(
            &service.url("/webhooks/payment"),
            "orderId=nope&status=paid"
        )
        .status,
        404
    );
    assert_eq!(
        post_form(&service.url("/webhooks/payment"), "status=paid").status,
        400
    );
}

#[test]
fn unpaid_orders_are_cancelled_by_the_timed_job() {
    let service = Launch::new("billing-service")
        .env("ORDER_TTL_MS", 300)
        .env("ORDER_EXPIRY_INTERVAL_MS", 50)
        .start();
    let unpaid = post_json(&service.url("/orders"), &json!({})).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = post_json(&service.url("/orders"), &json!({})).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        post_form(
            &service.url("/webhooks/payment"),
            &format!("orderId={paid}&status=paid")
        )
        .status,
        200
    );

    wait_for(
        Duration::from_secs(10),
        "the unpaid order to be cancelled",
        || {
            (get(&service.url(&format!("/orders/{unpaid}"))).json()["status"] == "CANCELLED")
                .then_some(())
        },
    );
    assert_eq!(
        get(&service.url(&format!("/orders/{paid}"))).json()["status"],
        "PAID"
    );
    service.wait_log(&format!("Order {unpaid} expired"));
    assert!(!service.log().contains(&format!("Order {paid} expired")));
    assert_eq!(
        service
            .log()
            .matches(&format!("Order {unpaid} expired"))
            .count(),
        1,
        "cancelled twice"
    );

    // A payment arriving after the cancellation is acknowledged, not applied.
    let late = post_form(
        &service.url("/webhooks/payment"),
        &format!("orderId={unpaid}&status=paid"),
    );
    assert_eq!(late.status, 200);
    assert_eq!(late.json()["applied"], false);
    assert_eq!(
        get(&service.url(&format!("/orders/{unpaid}"))).json()["status"],
        "CANCELLED"
    );
}

/// A WebSocket client on its own TCP connection, with a read timeout.
type Socket = tungstenite::WebSocket<TcpStream>;

fn ws_connect(service: &Running, user: &str) -> Socket {
    let stream = TcpStream::connect(("127.0.0.1", service.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!(
        "ws://127.0.0.1:{}/notifications?userId={user}",
        service.port
    );
    let (socket, response) =
        tungstenite::client(url.as_str(), stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    socket
}

/// The next notification on `socket` whose message is not a probe.
fn next_notification(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("a frame") {
            tungstenite::Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if !value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("probe")
                {
                    return value;
                }
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Sends probes to `user` until `n` sockets are registered (the server
/// registers a socket just after the handshake answer).
fn wait_sockets(service: &Running, user: &str, n: u64) {
    wait_for(
        Duration::from_secs(10),
        &format!("{n} sockets for {user}"),
        || {
            let reply = post_json(
                &service.url("/notifications/send"),
                &json!({ "userId": user, "message": "probe" }),
            );
            (reply.json()["delivered"] == n).then_some(())
        },
    );
}

#[test]
fn websocket_notifications_reach_every_socket_of_the_user_only() {
    let mut service = Launch::new("notification-service").start();
    let mut alice1 = ws_connect(&service, "alice");
    let mut alice2 = ws_connect(&service, "alice");
    let mut bob = ws_connect(&service, "bob");
    wait_sockets(&service, "alice", 2);
    wait_sockets(&service, "bob", 1);

    let reply = post_json(
        &service.url("/notifications/send"),
        &json!({ "userId": "alice", "message": "hello" }),
    );
    assert_eq!(reply.json(), json!({ "delivered": 2 }));
    for socket in [&mut alice1, &mut alice2] {
        assert_eq!(
            next_notification(socket),
            json!({ "userId": "alice", "message": "hello" })
        );
    }
    post_json(
        &service.url("/notifications/send"),
        &json!({ "userId": "bob", "message": "for bob" }),
    );
    assert_eq!(
        next_notification(&mut bob)["message"],
        "for bob",
        "bob got alice's message"
    );
    let nobody = post_json(
        &service.url("/notifications/send"),
        &json!({ "userId": "carol", "message": "x" }),
    );
    assert_eq!(nobody.json()["delivered"], 0);

    // A closed socket is forgotten.
    alice2.close(None).unwrap();
    while alice2.read().is_ok() {}
    wait_sockets(&service, "alice", 1);

    // Stopping closes the remaining sockets with "going away", then exits 0.
    service.signal(Signal::SIGTERM);
    let close = loop {
        match bob.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    assert!(service.wait_exit().success(), "{}", service.log());
}

#[test]
fn an_upload_reports_size_and_sha256_and_its_temp_file_goes_with_the_service() {
    let storage = tempfile::tempdir().unwrap();
    let mut service = Launch::new("app-service")
        .env("APP_STORAGE_DIR", storage.path().display())
        .start();
    // 1 MiB + 7 bytes, so the body arrives in many chunks.
    let body: Vec<u8> = (0..1_048_583u32).map(|i| (i % 251) as u8).collect();
    let reply = send(
        "POST",
        &service.url("/apps"),
        &[("content-type", "application/octet-stream")],
        Some(body),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let app = reply.json();
    assert_eq!(app["size"], 1_048_583);
    assert_eq!(
        app["sha256"],
        "9e037498ddbb955fba0752812031c14ba299a4875cb400e8b8c1d77b3962c90e"
    );
    let id = app["id"].as_str().unwrap();
    assert_eq!(get(&service.url(&format!("/apps/{id}"))).json(), app);
    assert_eq!(get(&service.url("/apps/nope")).status, 404);

    let files: Vec<_> = fs::read_dir(storage.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), 1_048_583);

    let empty = send("POST", &service.url("/apps"), &[], Some(Vec::new())).json();
    assert_eq!(empty["size"], 0);
    assert_eq!(
        empty["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );

    service.signal(Signal::SIGTERM);
    assert!(service.wait_exit().success());
    assert_eq!(
        fs::read_dir(storage.path()).unwrap().count(),
        0,
        "temp files left behind"
    );
}

#[test]
fn login_gives_a_token_that_every_instance_accepts() {
    let a = Launch::new("user-service")
        .env("INSTANCE_ID", 0)
        .env("JWT_SECRET", "shared")
        .start();
    let b = Launch::new("user-service")
        .env("INSTANCE_ID", 1)
        .env("JWT_SECRET", "shared")
        .start();
    let other = Launch::new("user-service")
        .env("JWT_SECRET", "another")
        .start();

    let reply = post_json(
        &a.url("/auth/login"),
        &json!({ "username": "alice", "password": "pw" }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");

    let me = send(
        "GET",
        &b.url("/users/me"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        me.json(),
        json!({ "username": "alice", "instance": "instance-1" })
    );
    assert_eq!(
        send(
            "GET",
            &other.url("/users/me"),
            &[("authorization", &bearer)],
            None
        )
        .status,
        401
    );

    assert_eq!(get(&a.url("/users/me")).status, 401);
    assert_eq!(
        send(
            "GET",
            &a.url("/users/me"),
            &[("authorization", "Bearer not.a.token")],
            None
        )
        .status,
        401
    );
    let empty = post_json(
        &a.url("/users/login"),
        &json!({ "username": "alice", "password": "" }),
    );
    assert_eq!(empty.status, 401);
    let via_users = post_json(
        &a.url("/users/login"),
        &json!({ "username": "bob", "password": "x" }),
    );
    assert_eq!(via_users.status, 200);
}

#[test]
fn the_gateway_routes_by_prefix_and_answers_502_for_a_dead_upstream() {
    let devices = Launch::new("device-service").start();
    let billing = Launch::new("billing-service").start();
    let users = Launch::new("user-service").start();
    let dead = free_port(); // nothing listens there
    let gateway = Launch::new("api-gateway")
        .env("INSTANCE_ID", 3)
        .env("DEVICE_SERVICE_URL", devices.url(""))
        .env("BILLING_SERVICE_URL", billing.url(""))
        .env("USER_SERVICE_URL", users.url("/")) // a trailing slash is fine
        .env(
            "NOTIFICATION_SERVICE_URL",
            format!("http://127.0.0.1:{dead}"),
        )
        .env("APP_SERVICE_URL", format!("http://127.0.0.1:{dead}"))
        .start();
    assert_eq!(get(&gateway.url("/")).json()["instance"], "instance-3");

    // device-service: body, method and query kept.
    let reply = post_json(
        &gateway.url("/api/devices"),
        &json!({ "userId": "u9", "name": "d" }),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.headers["x-served-by"], "api-gateway instance-3");
    let device = reply.json();
    assert_eq!(device["adbPort"], 5555);
    let id = device["id"].as_str().unwrap();
    assert_eq!(
        get(&gateway.url(&format!("/api/devices/{id}"))).json()["id"],
        id
    );
    assert_eq!(
        get(&gateway.url("/api/devices?userId=u9"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&gateway.url("/api/devices?userId=zz"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    devices.wait_log("Allocated ports: ADB=5555, WebRTC=8080");

    // billing-service: /api/billing/<rest> -> /<rest>, form bodies kept.
    let order = post_json(&gateway.url("/api/billing/orders"), &json!({ "amount": 5 }));
    assert_eq!(order.status, 201, "{}", order.body);
    let order_id = order.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let paid = post_form(
            &gateway.url("/api/billing/webhooks/payment"),
            &format!("orderId={order_id}&status=paid"),
        );
        assert_eq!(paid.status, 200, "{}", paid.body);
    }
    let order = get(&gateway.url(&format!("/api/billing/orders/{order_id}"))).json();
    assert_eq!(
        (order["status"].as_str(), order["applied_payments"].as_u64()),
        (Some("PAID"), Some(1))
    );

    // user-service: the Authorization header is kept.
    let login = post_json(
        &gateway.url("/api/users/login"),
        &json!({ "username": "carol", "password": "pw" }),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let bearer = format!("Bearer {}", login.json()["token"].as_str().unwrap());
    let me = send(
        "GET",
        &gateway.url("/api/users/me"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(me.json()["username"], "carol");
    assert_eq!(get(&gateway.url("/api/users/me")).status, 401);

    // A dead upstream is a JSON 502; an unknown prefix a 404.
    let down = post_json(
        &gateway.url("/api/notifications/send"),
        &json!({ "userId": "u", "message": "m" }),
    );
    assert_eq!(down.status, 502, "{}", down.body);
    assert_eq!(down.json()["service"], "notification-service");
    assert_eq!(get(&gateway.url("/api/apps/x")).status, 502);
    assert_eq!(get(&gateway.url("/api/nothing")).status, 404);
    assert_eq!(get(&gateway.url("/api/devicesX")).status, 404);
}

#[test]
fn an_oversized_upload_is_refused_and_leaves_no_file() {
    let storage = tempfile::tempdir().unwrap();
    let service = Launch::new("app-service")
        .env("APP_STORAGE_DIR", storage.path().display())
        .env("APP_MAX_UPLOAD_BYTES", 1000)
        .start();
    let reply = try_send("POST", &service.url("/apps"), &[], Some(vec![7u8; 4096]));
    // The service may close the connection before the client has sent the
    // whole body; either way nothing may be stored.
    if let Ok(reply) = reply {
        assert_eq!(reply.status, 413, "{}", reply.body);
    }
    assert_eq!(get(&service.url("/apps")).json(), json!([]));
    assert_eq!(
        fs::read_dir(storage.path()).unwrap().count(),
        0,
        "temp file left behind"
    );
}
