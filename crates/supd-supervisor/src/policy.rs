//! The restart policy: what to do when an instance exits on its own.
//!
//! PM2's rules, made explicit: a run shorter than `min_uptime` is *unstable*;
//! `max_restarts` unstable runs in a row make the instance `errored`;
//! `exp_backoff_restart_delay` grows x1.5 per unstable run up to 15 s and is
//! reset by a stable run; exit codes in `stop_exit_codes` and
//! `autorestart = false` mean "stay stopped".

use std::time::Duration;

use supd_config::AppConfig;

/// The ceiling of the exponential back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal (by number) killed it.
    Signal(i32),
    /// It ended while the daemon was re-executing itself, and the previous
    /// image collected its status.
    Unknown,
}

/// What to do after an unrequested exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `delay` (zero: at once).
    Restart {
        /// How long to wait first.
        delay: Duration,
    },
    /// Leave it stopped (a stop exit code, or autorestart off).
    Stop,
    /// Give up until a user acts.
    Errored {
        /// Why, for `show` and the daemon log.
        reason: String,
    },
}

/// The restart-related settings of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Restart on exit at all.
    pub autorestart: bool,
    /// Unstable restarts allowed in a row.
    pub max_restarts: u32,
    /// Runs shorter than this are unstable.
    pub min_uptime: Duration,
    /// Fixed delay before a restart.
    pub restart_delay: Duration,
    /// Initial exponential back-off, replacing `restart_delay` when set.
    pub exp_backoff: Option<Duration>,
    /// Exit codes that mean "done, do not restart".
    pub stop_exit_codes: Vec<i32>,
}

impl From<&AppConfig> for Policy {
    fn from(c: &AppConfig) -> Self {
        Policy {
            autorestart: c.autorestart,
            max_restarts: c.max_restarts,
            min_uptime: c.min_uptime,
            restart_delay: c.restart_delay,
            exp_backoff: c.exp_backoff_restart_delay,
            stop_exit_codes: c.stop_exit_codes.clone(),
        }
    }
}

/// The memory an instance carries from one run to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunHistory {
    /// Unstable runs in a row.
    pub unstable_restarts: u32,
    /// The back-off used for the previous unstable restart.
    pub backoff: Option<Duration>,
}

impl Policy {
    /// Decides what follows an exit the user did not ask for, updating `history`.
    pub fn on_exit(&self, history: &mut RunHistory, exit: Exit, uptime: Duration) -> Decision {
        if let Exit::Code(code) = exit
            && self.stop_exit_codes.contains(&code)
        {
            return Decision::Stop;
        }
        if !self.autorestart {
            return Decision::Stop;
        }
        if uptime >= self.min_uptime {
            *history = RunHistory::default();
            return Decision::Restart {
                delay: self.exp_backoff.unwrap_or(self.restart_delay),
            };
        }
        history.unstable_restarts += 1;
        if history.unstable_restarts > self.max_restarts {
            return Decision::Errored {
                reason: format!(
                    "{} unstable restarts in a row (each run shorter than min_uptime {} ms)",
                    self.max_restarts,
                    self.min_uptime.as_millis()
                ),
            };
        }
        let delay = match self.exp_backoff {
            Some(initial) => {
                let next = history
                    .backoff
                    .map_or(initial, |b| b.mul_f64(1.5))
                    .min(MAX_BACKOFF);
                history.backoff = Some(next);
                next
            }
            None => self.restart_delay,
        };
        Decision::Restart { delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> Policy {
        Policy {
            autorestart: true,
            max_restarts: 3,
            min_uptime: ms(1000),
            restart_delay: ms(0),
            exp_backoff: None,
            stop_exit_codes: vec![0],
        }
    }

    #[test]
    fn table() {
        struct Case {
            what: &'static str,
            policy: Policy,
            history: RunHistory,
            exit: Exit,
            uptime: Duration,
            want: Decision,
        }
        let restart = |d| Decision::Restart { delay: ms(d) };
        let cases = [
            Case {
                what: "stop exit code",
                policy: policy(),
                history: RunHistory::default(),
                exit: Exit::Code(0),
                uptime: ms(5),
                want: Decision::Stop,
            },
            Case {
                what: "autorestart off",
                policy: Policy {
                    autorestart: false,
                    ..policy()
                },
                history: RunHistory::default(),
                exit: Exit::Code(1),
                uptime: ms(5000),
                want: Decision::Stop,
            },
            Case {
                what: "signal is never a stop exit code",
                policy: Policy {
                    stop_exit_codes: vec![9],
                    ..policy()
                },
                history: RunHistory::default(),
                exit: Exit::Signal(9),
                uptime: ms(5000),
                want: restart(0),
            },
            Case {
                what: "stable run restarts with restart_delay",
                policy: Policy {
                    restart_delay: ms(250),
                    ..policy()
                },
                history: RunHistory {
                    unstable_restarts: 3,
                    backoff: None,
                },
                exit: Exit::Code(1),
                uptime: ms(1000),
                want: restart(250),
            },
            Case {
                what: "last allowed unstable restart",
                policy: policy(),
                history: RunHistory {
                    unstable_restarts: 2,
                    backoff: None,
                },
                exit: Exit::Code(1),
                uptime: ms(10),
                want: restart(0),
            },
            Case {
                what: "one unstable run too many",
                policy: policy(),
                history: RunHistory {
                    unstable_restarts: 3,
                    backoff: None,
                },
                exit: Exit::Code(1),
                uptime: ms(10),
                want: Decision::Errored {
                    reason:
                        "3 unstable restarts in a row (each run shorter than min_uptime 1000 ms)"
                            .into(),
                },
            },
            Case {
                what: "backoff grows x1.5",
                policy: Policy {
                    exp_backoff: Some(ms(100)),
                    max_restarts: 50,
                    ..policy()
                },
                history: RunHistory {
                    unstable_restarts: 1,
                    backoff: Some(ms(100)),
                },
                exit: Exit::Code(1),
                uptime: ms(10),
                want: restart(150),
            },
            Case {
                what: "backoff is capped at 15 s",
                policy: Policy {
                    exp_backoff: Some(ms(100)),
                    max_restarts: 50,
                    ..policy()
                },
                history: RunHistory {
                    unstable_restarts: 20,
                    backoff: Some(ms(14_000)),
                },
                exit: Exit::Code(1),
                uptime: ms(10),
                want: restart(15_000),
            },
        ];
        for case in cases {
            let mut history = case.history;
            let got = case.policy.on_exit(&mut history, case.exit, case.uptime);
            assert_eq!(got, case.want, "{}", case.what);
        }
    }

    /// The delays of a crash loop, one decision after another: x1.5 from
    /// the initial back-off up to exactly `MAX_BACKOFF`, then flat there
    /// (what the end-to-end test cannot wait minutes to see).
    #[test]
    fn backoff_grows_to_its_ceiling_and_stays_there() {
        let p = Policy {
            exp_backoff: Some(ms(100)),
            max_restarts: 100,
            ..policy()
        };
        let mut h = RunHistory::default();
        let delays: Vec<Duration> = (0..20)
            .map(|_| match p.on_exit(&mut h, Exit::Code(1), ms(1)) {
                Decision::Restart { delay } => delay,
                other => panic!("a restart, not {other:?}"),
            })
            .collect();
        // 100 ms x 1.5^n passes 15 s at n = 13 (100 * 1.5^13 = 19.5 s).
        let mut want = ms(100);
        for (n, delay) in delays.iter().enumerate() {
            assert_eq!(*delay, want, "restart {n}: {delays:?}");
            want = want.mul_f64(1.5).min(MAX_BACKOFF);
        }
        assert!(
            delays[12] > ms(12_900) && delays[12] < ms(13_000),
            "the last step below the ceiling: {delays:?}"
        );
        assert!(
            delays[13..].iter().all(|d| *d == Duration::from_secs(15)),
            "capped at 15 s from the 14th restart on: {delays:?}"
        );
    }

    #[test]
    fn stable_run_resets_backoff_and_count() {
        let p = Policy {
            exp_backoff: Some(ms(100)),
            ..policy()
        };
        let mut h = RunHistory::default();
        assert_eq!(
            p.on_exit(&mut h, Exit::Code(1), ms(1)),
            Decision::Restart { delay: ms(100) }
        );
        assert_eq!(
            p.on_exit(&mut h, Exit::Code(1), ms(1)),
            Decision::Restart { delay: ms(150) }
        );
        assert_eq!(h.unstable_restarts, 2);
        assert_eq!(
            p.on_exit(&mut h, Exit::Code(1), ms(2000)),
            Decision::Restart { delay: ms(100) }
        );
        assert_eq!(h, RunHistory::default());
        assert_eq!(
            p.on_exit(&mut h, Exit::Code(1), ms(1)),
            Decision::Restart { delay: ms(100) }
        );
    }
}
