//! Replies an app actor holds until the step that produced them is published.
//!
//! The actor answers commands in the middle of a step and publishes its
//! [`crate::app::AppView`] at the end of it. Were a reply sent at once, its
//! caller could read the view before the change it was told about shows
//! there, and write a state file without it. Held here and delivered after
//! the publish, every reply comes with a view that is already current: the
//! state file can be written from the views alone, without asking any actor
//! (see `persist` in [`crate::registry`]).

use tokio::sync::oneshot;

/// The replies of the current step, in the order they were given.
#[derive(Default)]
pub struct Replies(Vec<Box<dyn FnOnce() + Send>>);

impl Replies {
    /// Holds `value` for `reply` until [`Replies::deliver`]. A caller that
    /// stopped waiting is no error: the outcome still shows in the view.
    pub fn send<T: Send + 'static>(&mut self, reply: oneshot::Sender<T>, value: T) {
        self.0.push(Box::new(move || {
            let _ = reply.send(value);
        }));
    }

    /// Sends every held reply: the step's view has been published.
    pub fn deliver(&mut self) {
        for reply in self.0.drain(..) {
            reply();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sent_before_deliver_and_all_in_order_after() {
        let mut replies = Replies::default();
        let (a, mut got_a) = oneshot::channel();
        let (b, mut got_b) = oneshot::channel();
        replies.send(a, 1);
        replies.send(b, "two");
        assert!(got_a.try_recv().is_err());
        assert!(got_b.try_recv().is_err());
        replies.deliver();
        assert_eq!(got_a.try_recv(), Ok(1));
        assert_eq!(got_b.try_recv(), Ok("two"));
    }

    #[test]
    fn a_caller_that_left_is_no_error() {
        let mut replies = Replies::default();
        let (tx, rx) = oneshot::channel::<u32>();
        drop(rx);
        replies.send(tx, 7);
        replies.deliver();
    }
}
