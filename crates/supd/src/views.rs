//! A read-only window on the table of apps, for those who read it on their
//! own schedule (the monitor's samples, metrics scrapes, the triggers'
//! reactor finding an app reported by name).
//!
//! Defined below the table so the table need not know who reads it: the
//! registry hands out a [`Views`] built over its list, and the readers
//! depend on this module alone, never on the registry.

use std::sync::Arc;

use crate::app::{AppHandle, AppView};

/// The apps in start order, as the table holds them at each call.
#[derive(Clone)]
pub struct Views(Arc<dyn Fn() -> Vec<AppHandle> + Send + Sync>);

impl Views {
    /// A window that lists the apps by calling `apps`.
    pub fn new(apps: impl Fn() -> Vec<AppHandle> + Send + Sync + 'static) -> Views {
        Views(Arc::new(apps))
    }

    /// Every app's handle, in start order.
    pub fn handles(&self) -> Vec<AppHandle> {
        (self.0)()
    }

    /// The current view of every app, in start order.
    pub fn views(&self) -> Vec<AppView> {
        self.handles().iter().map(AppHandle::view).collect()
    }

    /// The app named, if the table holds it.
    pub fn find(&self, name: &str) -> Option<AppHandle> {
        self.handles().into_iter().find(|a| a.name == name)
    }
}
