//! A count of the changes to what the state file records, with a wake-up.
//!
//! App actors bump it after publishing a view that changes what a
//! restarted daemon would need; the state file's writer waits on it and
//! compares counts to know whether a write already showed a change. It is
//! a leaf of its own so the actors need not know the state file (which
//! reads their views): the dependency points one way, app -> changes <- state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A shared change counter; clones count together.
#[derive(Clone, Default)]
pub struct Changes {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    touched: Notify,
    /// How many times [`Changes::touch`] was called.
    touches: AtomicU64,
}

impl Changes {
    /// Something recorded changed, and its view is published.
    pub fn touch(&self) {
        self.inner.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touched.notify_one();
    }

    /// How many changes so far.
    pub fn count(&self) -> u64 {
        self.inner.touches.load(Ordering::SeqCst)
    }

    /// Waits for a change (one that came since the last wait counts).
    pub async fn changed(&self) {
        self.inner.touched.notified().await;
    }
}
