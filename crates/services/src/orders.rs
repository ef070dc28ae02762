//! billing-service's order book: orders, payment callbacks applied at most
//! once, and the expiry of unpaid orders.
//!
//! These are the two behaviours that go wrong with two instances: each
//! instance's timer cancels the same orders, and two instances can each apply
//! the same payment callback. In one process, under one lock, both are
//! simple; hence `max_instances = 1`. Time is passed in, so the rules are
//! tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Created, waiting for its payment.
    Pending,
    /// A payment callback was applied.
    Paid,
    /// Expired unpaid.
    Cancelled,
}

/// One order, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// Unique id.
    pub id: String,
    /// Current status.
    pub status: Status,
    /// The amount given at creation, if any (not interpreted).
    pub amount: Option<serde_json::Value>,
    /// The user given at creation, if any.
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    /// How many payment callbacks changed this order: 0 or 1.
    pub applied_payments: u32,
    /// When it was created (for expiry).
    #[serde(skip)]
    pub created: Instant,
}

/// What a payment callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// The order was pending and is now paid.
    Applied,
    /// The order was already paid: a duplicate callback, ignored.
    Duplicate,
    /// The order was cancelled before the payment arrived: ignored (a real
    /// service would refund).
    TooLate,
    /// The callback did not report success: ignored.
    NotPaid,
}

/// All orders of this process.
#[derive(Debug, Default)]
pub struct OrderBook {
    /// Orders by id.
    orders: HashMap<String, Order>,
}

impl OrderBook {
    /// Creates a pending order.
    pub fn create(
        &mut self,
        id: String,
        amount: Option<serde_json::Value>,
        user_id: Option<String>,
        now: Instant,
    ) -> Order {
        let order = Order {
            id: id.clone(),
            status: Status::Pending,
            amount,
            user_id,
            applied_payments: 0,
            created: now,
        };
        self.orders.insert(id, order.clone());
        order
    }

    /// The order `id`.
    pub fn get(&self, id: &str) -> Option<&Order> {
        self.orders.get(id)
    }

    /// Every order, oldest first.
    pub fn list(&self) -> Vec<Order> {
        let mut all: Vec<Order> = self.orders.values().cloned().collect();
        all.sort_by_key(|o| o.created);
        all
    }

    /// Applies a payment callback for `id` reporting `status`
    /// (`paid`, in any case, is a success). `None` when the order is unknown.
    pub fn pay(&mut self, id: &str, status: &str) -> Option<(Payment, Order)> {
        let order = self.orders.get_mut(id)?;
        let outcome = if status.eq_ignore_ascii_case("paid") {
            match order.status {
                Status::Pending => {
                    order.status = Status::Paid;
                    order.applied_payments += 1;
                    Payment::Applied
                }
                Status::Paid => Payment::Duplicate,
                Status::Cancelled => Payment::TooLate,
            }
        } else {
            Payment::NotPaid
        };
        Some((outcome, order.clone()))
    }

    /// Cancels every pending order created `ttl` or longer before `now`;
    /// returns them with their age.
    pub fn expire(&mut self, ttl: Duration, now: Instant) -> Vec<(Order, Duration)> {
        let mut expired = Vec::new();
        for order in self.orders.values_mut() {
            let age = now.saturating_duration_since(order.created);
            if order.status == Status::Pending && age >= ttl {
                order.status = Status::Cancelled;
                expired.push((order.clone(), age));
            }
        }
        expired.sort_by_key(|(o, _)| o.created);
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book_with(id: &str, at: Instant) -> OrderBook {
        let mut book = OrderBook::default();
        book.create(id.into(), None, None, at);
        book
    }

    #[test]
    fn a_payment_applies_once() {
        let mut book = book_with("o1", Instant::now());
        assert_eq!(book.pay("o1", "paid").unwrap().0, Payment::Applied);
        let (again, order) = book.pay("o1", "PAID").unwrap();
        assert_eq!(again, Payment::Duplicate);
        assert_eq!(order.status, Status::Paid);
        assert_eq!(order.applied_payments, 1);
        assert!(book.pay("nope", "paid").is_none());
    }

    #[test]
    fn a_failed_payment_changes_nothing() {
        let mut book = book_with("o1", Instant::now());
        let (outcome, order) = book.pay("o1", "failed").unwrap();
        assert_eq!(outcome, Payment::NotPaid);
        assert_eq!(order.status, Status::Pending);
    }

    #[test]
    fn only_old_pending_orders_expire() {
        let t0 = Instant::now();
        let mut book = book_with("old", t0);
        book.create("paid".into(), None, None, t0);
        book.pay("paid", "paid");
        book.create("young".into(), None, None, t0 + Duration::from_secs(10));
        let ttl = Duration::from_secs(15);

        let expired = book.expire(ttl, t0 + Duration::from_secs(20));
        let ids: Vec<_> = expired.iter().map(|(o, _)| o.id.as_str()).collect();
        assert_eq!(ids, ["old"]);
        assert_eq!(book.get("old").unwrap().status, Status::Cancelled);
        assert_eq!(book.get("young").unwrap().status, Status::Pending);
        assert_eq!(book.get("paid").unwrap().status, Status::Paid);
        assert!(
            book.expire(ttl, t0 + Duration::from_secs(20)).is_empty(),
            "cancelled once"
        );
        assert_eq!(book.pay("old", "paid").unwrap().0, Payment::TooLate);
    }
}
