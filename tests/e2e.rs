//! End-to-end tests: the real `supd`, `supctl` and service binaries, each test
//! with its own temporary `SUPD_HOME` and its own free ports.
//!
//! The binaries must be built first (`cargo build --workspace`, as the README's
//! test command does); they are found next to this test executable.

mod support;

mod architecture;

mod cluster;
mod config;
mod control;
mod crash;
mod deploy;
mod docs;
mod drain;
mod examples;
mod export;
mod fork;
mod handover_compat;
mod home;
mod host;
mod import;
mod limits;
mod list;
mod log_files;
mod logs;
mod metrics;
mod monit;
mod monitor;
mod operations;
mod platform;
mod pm2_aliases;
mod pm2_commands;
mod pm2_files;
mod readiness;
mod realapps;
mod resurrect;
mod run;
mod scale;
mod services;
mod start_name;
mod tree;
mod unserved;
mod update;
mod watch;
mod zeroconfig;
