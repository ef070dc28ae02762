//! billing-service: orders, payment callbacks applied at most once, and a
//! timed job that cancels orders left unpaid.
//!
//! Run it as one instance only (`max_instances = 1`): with two, the job runs
//! twice and two processes can each apply the same callback.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use supd_services::orders::{Order, OrderBook, Payment};
use supd_services::shutdown::Shutdown;
use supd_services::{ApiError, Ctx, Service, env};
use tokio::time::MissedTickBehavior;

/// Body of `POST /orders` (optional; unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    /// Any JSON value; kept and shown, never interpreted.
    amount: Option<Value>,
    /// The paying user.
    user_id: Option<String>,
}

/// Body of `POST /webhooks/payment` (form-urlencoded, as payment providers
/// send it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Callback {
    /// The order paid for.
    order_id: String,
    /// `paid` for a successful payment.
    status: String,
}

/// Shared handler state.
type Shared = Arc<Mutex<OrderBook>>;

fn main() -> ExitCode {
    supd_services::run(
        Service {
            name: "billing-service",
            default_port: 30005,
        },
        build,
    )
}

/// The routes, and the expiry job (`ORDER_EXPIRY_INTERVAL_MS`,
/// `ORDER_TTL_MS`).
async fn build(ctx: Ctx) -> anyhow::Result<Router> {
    let interval =
        Duration::from_millis(env::parse_or("ORDER_EXPIRY_INTERVAL_MS", 300_000u64)?.max(1));
    let ttl = Duration::from_millis(env::parse_or("ORDER_TTL_MS", 900_000u64)?);
    let book = Shared::default();
    println!(
        "billing-service expiry job: every {interval:?}, cancels PENDING orders older than {ttl:?}"
    );
    tokio::spawn(expire_orders(
        book.clone(),
        interval,
        ttl,
        ctx.shutdown.clone(),
    ));
    Ok(Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(show))
        .route("/webhooks/payment", post(payment))
        .with_state(book))
}

/// The timed job: every `interval`, cancel pending orders older than `ttl`.
async fn expire_orders(book: Shared, interval: Duration, ttl: Duration, mut shutdown: Shutdown) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.stopping() => return,
        }
        let expired = book
            .lock()
            .expect("order book lock")
            .expire(ttl, Instant::now());
        for (order, age) in expired {
            println!(
                "Order {} expired: PENDING for {} ms, now CANCELLED",
                order.id,
                age.as_millis()
            );
        }
    }
}

/// `POST /orders`: 201 with a new PENDING order. The body is optional.
async fn create(
    State(book): State<Shared>,
    body: Bytes,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let new: NewOrder = if body.iter().all(u8::is_ascii_whitespace) {
        NewOrder::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let id = uuid::Uuid::new_v4().to_string();
    let order =
        book.lock()
            .expect("order book lock")
            .create(id, new.amount, new.user_id, Instant::now());
    println!("Order {} created: PENDING", order.id);
    Ok((StatusCode::CREATED, Json(order)))
}

/// `GET /orders`: every order, oldest first.
async fn list(State(book): State<Shared>) -> Json<Vec<Order>> {
    Json(book.lock().expect("order book lock").list())
}

/// `GET /orders/{id}`.
async fn show(State(book): State<Shared>, Path(id): Path<String>) -> Result<Json<Order>, ApiError> {
    let book = book.lock().expect("order book lock");
    book.get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| no_order(&id))
}

/// `POST /webhooks/payment`: applies a payment at most once per order. A
/// repeated or late callback is acknowledged (200, so the provider stops
/// retrying) but changes nothing; `applied` says which happened.
async fn payment(
    State(book): State<Shared>,
    form: Result<Form<Callback>, FormRejection>,
) -> Result<Json<Value>, ApiError> {
    let Form(callback) = form.map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
    let (outcome, order) = book
        .lock()
        .expect("order book lock")
        .pay(&callback.order_id, &callback.status)
        .ok_or_else(|| no_order(&callback.order_id))?;
    let id = &order.id;
    match outcome {
        Payment::Applied => println!("Payment applied: order {id} is now PAID"),
        Payment::Duplicate => {
            println!("Duplicate payment callback ignored: order {id} is already PAID")
        }
        Payment::TooLate => println!("Payment callback for CANCELLED order {id} ignored"),
        Payment::NotPaid => println!(
            "Payment callback with status {:?} for order {id} ignored",
            callback.status
        ),
    }
    Ok(Json(json!({
        "orderId": id,
        "status": order.status,
        "applied": outcome == Payment::Applied,
        "applied_payments": order.applied_payments,
    })))
}

/// 404 for an unknown order.
fn no_order(id: &str) -> ApiError {
    ApiError::not_found(format!("no order {id}"))
}
