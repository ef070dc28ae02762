//! The seed's deployment checklist against the real platform started from
//! `ecosystem/ecosystem.toml`. The only test on ports 30000–30006.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Load, Supd, bin, get_fresh, wait_for};

/// The platform's file, with its programs taken from this test build.
fn platform_file(supd: &Supd) -> String {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ecosystem/ecosystem.toml");
    let text = std::fs::read_to_string(&root).expect("ecosystem/ecosystem.toml");
    let dir = bin("api-gateway").parent().unwrap().display().to_string();
    let text = text.replace("../target/release/", &format!("{dir}/"));
    supd.write("ecosystem.toml", &text).display().to_string()
}

fn post(url: &str, body: Value) -> Value {
    let mut response = ureq::post(url).send_json(body).expect("POST");
    response.body_mut().read_json().expect("JSON")
}

#[test]
fn the_deployment_checklist() {
    let supd = Supd::new();
    supd.ok(&["start", &platform_file(&supd)]);
    let rows = supd.list();
    assert_eq!(
        rows.len(),
        10,
        "4 gateways, 2 user-services, 4 single services"
    );
    assert!(rows.iter().all(|r| r["status"] == "online"), "{rows:?}");

    for port in [30000, 30001, 30002, 30003, 30005, 30006] {
        assert_eq!(
            get_fresh(port, "/health").unwrap().0,
            200,
            "health on {port}"
        );
    }

    let mut seen = HashSet::new();
    for _ in 0..60 {
        let (_, body) = get_fresh(30000, "/health").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        seen.insert(v["instance"].as_str().unwrap().to_string());
    }
    let want: HashSet<String> = (0..4).map(|i| format!("instance-{i}")).collect();
    assert_eq!(seen, want, "60 fresh requests reach every gateway instance");

    let mut ports = HashSet::new();
    for i in 0..3 {
        let device = post(
            "http://127.0.0.1:30000/api/devices",
            json!({"userId": "u1", "name": format!("d{i}")}),
        );
        assert!(
            ports.insert(device["adbPort"].as_u64().unwrap()),
            "distinct ADB ports: {device}"
        );
    }
    let log = supd.home().join("logs/device-service-out.log");
    wait_for(
        Duration::from_secs(10),
        "Allocated ports in the device-service log",
        || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("Allocated ports: ADB=")
                .then_some(())
        },
    );

    let order = post(
        "http://127.0.0.1:30000/api/billing/orders",
        json!({"amount": 10}),
    );
    let id = order["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        ureq::post("http://127.0.0.1:30000/api/billing/webhooks/payment")
            .content_type("application/x-www-form-urlencoded")
            .send(format!("orderId={id}&status=paid"))
            .expect("payment callback");
    }
    let paid: Value = ureq::get(&format!("http://127.0.0.1:30000/api/billing/orders/{id}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["applied_payments"], 1);

    let stream = std::net::TcpStream::connect(("127.0.0.1", 30006)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut socket, _) =
        tungstenite::client("ws://127.0.0.1:30006/notifications?userId=alice", stream).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the notification delivered",
        || {
            let sent = post(
                "http://127.0.0.1:30006/notifications/send",
                json!({"userId": "alice", "message": "hi"}),
            );
            (sent["delivered"].as_u64() >= Some(1)).then_some(())
        },
    );
    let frame = socket.read().unwrap();
    assert!(frame.into_text().unwrap().contains("hi"));

    for name in ["device-service", "billing-service", "notification-service"] {
        let err = supd.fails(&["scale", name, "2"]);
        assert!(err.contains(name) && err.contains("max_instances"), "{err}");
    }

    let load = Load::start(30000, "/health", 6);
    supd.ok(&["reload", "api-gateway"]);
    load.finish_without_failures(51);
}
