//! The per-instance lifecycle pieces of supd, usable without the control socket:
//!
//! - [`policy`]: the restart policy as a pure function, table-tested.
//! - [`spawn`]: fork/exec into a new process group, and the one SIGCHLD
//!   reaper that collects every exit status (the daemon is a child subreaper,
//!   so orphaned grandchildren are reaped here too and never linger as zombies).
//! - [`group`]: signalling a whole process group and telling when it is gone.
//! - [`tree`]: an instance's group plus the descendants that left it, so a
//!   stop reaches them all.
//! - [`procfs`]: a process's group, start time, liveness and descendants
//!   from `/proc`.
//! - [`limits`]: the daemon's descriptor limit, raised for itself and given
//!   back to its children.

pub mod group;
pub mod limits;
pub mod policy;
pub mod procfs;
pub mod spawn;
pub mod transient;
pub mod tree;

pub use policy::{Decision, Exit, Policy, RunHistory};
pub use spawn::{Reaper, SpawnSpec};
