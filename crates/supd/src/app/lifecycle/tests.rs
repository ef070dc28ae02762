//! Walks every row of [`TABLE`] with a case of its own, and checks that a
//! pair of state and input the table does not name changes nothing.

use supd_supervisor::{Exit, Policy, RunHistory};

use super::*;

const PID: u32 = 7;
const SECOND: Duration = Duration::from_secs(1);

fn policy() -> Policy {
    Policy {
        autorestart: true,
        max_restarts: 16,
        min_uptime: SECOND,
        restart_delay: Duration::ZERO,
        exp_backoff: None,
        stop_exit_codes: vec![0],
    }
}

fn facts(policy: &Policy) -> Facts<'_> {
    Facts {
        now: Instant::now(),
        awaited: false,
        waits: true,
        fails_on_timeout: true,
        kill_timeout: Duration::from_millis(1600),
        listen_timeout: 10 * SECOND,
        watchdog: None,
        silent: Duration::ZERO,
        other_active: false,
        other_serving: false,
        policy,
        history: RunHistory::default(),
        spawn_failures: 0,
    }
}

/// A state of `kind`, with sample data.
fn sample(kind: Kind, now: Instant) -> State {
    match kind {
        Stopped => State::Stopped,
        Launching => State::Launching {
            pid: PID,
            awaited: true,
        },
        Online => State::Online {
            pid: PID,
            late: false,
        },
        WaitingRestart => State::WaitingRestart,
        Stopping => State::Stopping {
            pid: PID,
            kill_at: now,
            then: Retire::Keep,
            killed: false,
        },
        Draining => State::Draining {
            kill_at: now,
            then: Retire::Keep,
        },
        Errored => State::Errored,
    }
}

/// An input named `on`, with sample data.
fn input(on: On) -> Input {
    match on {
        On::Launch => Input::Launch,
        On::Spawned => Input::Spawned { pid: PID },
        On::SpawnFailed => Input::SpawnFailed { transient: true },
        On::Ready => Input::Ready,
        On::ReadyTimeout => Input::ReadyTimeout,
        On::Exited => Input::Exited {
            exit: Exit::Code(1),
            uptime: SECOND,
        },
        On::RestartDue => Input::RestartDue,
        On::Retire => Input::Retire {
            then: Retire::Remove,
        },
        On::KillDue => Input::KillDue,
        On::GroupGone => Input::GroupGone,
        On::WatchdogDue => Input::WatchdogDue,
    }
}

const KINDS: [Kind; 7] = [
    Stopped,
    Launching,
    Online,
    WaitingRestart,
    Stopping,
    Draining,
    Errored,
];
const INPUTS: [On; 11] = [
    On::Launch,
    On::Spawned,
    On::SpawnFailed,
    On::Ready,
    On::ReadyTimeout,
    On::Exited,
    On::RestartDue,
    On::Retire,
    On::KillDue,
    On::GroupGone,
    On::WatchdogDue,
];

/// One case: the row's condition, the step, what it must give.
struct Case {
    when: &'static str,
    from: State,
    input: Input,
    facts: Box<dyn Fn(&mut Facts)>,
    policy: Policy,
    to: State,
    effects: Vec<Effect>,
}

impl Case {
    /// The case under another restart policy.
    fn with(self, policy: Policy) -> Case {
        Case { policy, ..self }
    }
}

fn case(
    when: &'static str,
    from: State,
    input: Input,
    facts: impl Fn(&mut Facts) + 'static,
    to: State,
    effects: Vec<Effect>,
) -> Case {
    let facts = Box::new(facts);
    let policy = policy();
    Case {
        when,
        from,
        input,
        facts,
        policy,
        to,
        effects,
    }
}

/// What the policy decides for `exit` after `uptime` from a fresh history.
fn decided(policy: &Policy, exit: Exit, uptime: Duration) -> (RunHistory, Decision) {
    let mut history = RunHistory::default();
    let decision = policy.on_exit(&mut history, exit, uptime);
    (history, decision)
}

fn cases(now: Instant) -> Vec<Case> {
    use Effect as E;
    use State as S;
    let none = |_: &mut Facts| {};
    let launching = |awaited| S::Launching { pid: PID, awaited };
    let online = |late| S::Online { pid: PID, late };
    let stopping = |then, killed| S::Stopping {
        pid: PID,
        kill_at: now,
        then,
        killed,
    };
    let draining = |then| S::Draining { kill_at: now, then };
    let exited = |code, uptime| Input::Exited {
        exit: Exit::Code(code),
        uptime,
    };
    let retire = |then| Input::Retire { then };
    let spawn_failed = |transient| Input::SpawnFailed { transient };
    let kill_timeout = Duration::from_millis(1600);
    let retry = supd_supervisor::transient::retry_delay(0);
    let (stable, _) = decided(&policy(), Exit::Code(1), 5 * SECOND);
    let (done, _) = decided(&policy(), Exit::Code(0), 5 * SECOND);
    let gave_up_policy = Policy {
        max_restarts: 0,
        ..policy()
    };
    let (gave_up, Decision::Errored { reason }) =
        decided(&gave_up_policy, Exit::Code(1), Duration::ZERO)
    else {
        panic!("max_restarts 0 gives up at once");
    };
    let delayed_policy = Policy {
        restart_delay: 2 * SECOND,
        ..policy()
    };
    let (delayed, _) = decided(&delayed_policy, Exit::Code(1), 5 * SECOND);
    let mut all = Vec::new();
    for idle in [S::Stopped, S::Errored, S::WaitingRestart] {
        all.extend([
            case("", idle, Input::Launch, none, idle, vec![E::Spawn]),
            case(
                "readiness waits",
                idle,
                Input::Spawned { pid: PID },
                |f| f.awaited = true,
                launching(true),
                vec![E::Arm(Timer::ReadyTimeout, 10 * SECOND)],
            ),
            case(
                "readiness does not wait",
                idle,
                Input::Spawned { pid: PID },
                |f| f.waits = false,
                online(false),
                vec![E::Answer(PID), E::Keepalive],
            ),
            case(
                "other active in slot",
                idle,
                spawn_failed(true),
                |f| f.other_active = true,
                S::Errored,
                vec![E::Fail(Why::Spawn { retry_in: None }), E::Forget],
            ),
            case(
                "transient",
                idle,
                spawn_failed(true),
                none,
                S::WaitingRestart,
                vec![
                    E::CountSpawnFailure,
                    E::Arm(Timer::RestartDue, retry),
                    E::Fail(Why::Spawn {
                        retry_in: Some(retry),
                    }),
                ],
            ),
            case(
                "",
                idle,
                spawn_failed(false),
                none,
                S::Errored,
                vec![E::Fail(Why::Spawn { retry_in: None })],
            ),
            case(
                "",
                idle,
                retire(Retire::Remove),
                none,
                S::Stopped,
                vec![E::Gone(Retire::Remove)],
            ),
        ]);
    }
    for live in [launching(false), online(false)] {
        let effects = |more: Vec<Effect>| [vec![E::KillGroup(PID)], more].concat();
        all.extend([
            case(
                "other serving in slot",
                live,
                exited(1, SECOND),
                |f| f.other_serving = true,
                S::Stopped,
                effects(vec![E::Forget]),
            ),
            case(
                "policy: restart now",
                live,
                exited(1, 5 * SECOND),
                none,
                S::WaitingRestart,
                effects(vec![E::History(stable), E::CountRestart, E::Spawn]),
            ),
            case(
                "policy: restart later",
                live,
                exited(1, 5 * SECOND),
                none,
                S::WaitingRestart,
                effects(vec![
                    E::History(delayed),
                    E::Arm(Timer::RestartDue, 2 * SECOND),
                ]),
            )
            .with(delayed_policy.clone()),
            case(
                "policy: stop",
                live,
                exited(0, 5 * SECOND),
                none,
                S::Stopped,
                effects(vec![E::History(done)]),
            ),
            case(
                "policy: errored",
                live,
                exited(1, Duration::ZERO),
                none,
                S::Errored,
                effects(vec![
                    E::History(gave_up),
                    E::Fail(Why::Policy(reason.clone())),
                ]),
            )
            .with(gave_up_policy.clone()),
            case(
                "",
                live,
                retire(Retire::Remove),
                move |f| f.now = now,
                S::Stopping {
                    pid: PID,
                    kill_at: now + kill_timeout,
                    then: Retire::Remove,
                    killed: false,
                },
                vec![E::SignalTree(PID), E::Arm(Timer::KillDue, kill_timeout)],
            ),
        ]);
    }
    let not_ready = Why::NotReady;
    all.extend([
        case(
            "",
            launching(false),
            Input::Ready,
            none,
            online(false),
            vec![E::Answer(PID), E::Keepalive],
        ),
        case(
            "late",
            online(true),
            Input::Ready,
            none,
            online(false),
            vec![E::ClearLate],
        ),
        case(
            "readiness does not fail on timeout",
            launching(true),
            Input::ReadyTimeout,
            |f| f.fails_on_timeout = false,
            online(true),
            vec![E::Late, E::Answer(PID), E::Keepalive],
        ),
        case(
            "awaited, other active in slot",
            launching(true),
            Input::ReadyTimeout,
            |f| f.other_active = true,
            S::Errored,
            vec![E::KillGroup(PID), E::Fail(not_ready.clone()), E::Forget],
        ),
        case(
            "awaited",
            launching(true),
            Input::ReadyTimeout,
            none,
            S::Errored,
            vec![E::KillGroup(PID), E::Fail(not_ready.clone())],
        ),
        case(
            "",
            launching(false),
            Input::ReadyTimeout,
            none,
            launching(false),
            vec![E::Warn(not_ready), E::KillGroup(PID)],
        ),
        case(
            "",
            stopping(Retire::Remove, true),
            exited(1, SECOND),
            none,
            draining(Retire::Remove),
            vec![E::Drain {
                pid: PID,
                until: now,
            }],
        ),
        case(
            "awaited, other active in slot",
            launching(true),
            exited(1, SECOND),
            |f| f.other_active = true,
            S::Errored,
            vec![
                E::KillGroup(PID),
                E::Fail(Why::ExitedEarly(Exit::Code(1))),
                E::Forget,
            ],
        ),
        case(
            "awaited",
            launching(true),
            exited(1, SECOND),
            none,
            S::Errored,
            vec![E::KillGroup(PID), E::Fail(Why::ExitedEarly(Exit::Code(1)))],
        ),
        case(
            "",
            S::WaitingRestart,
            Input::RestartDue,
            none,
            S::WaitingRestart,
            vec![E::CountRestart, E::Spawn],
        ),
        case(
            "",
            stopping(Retire::Keep, false),
            retire(Retire::Remove),
            none,
            stopping(Retire::Remove, false),
            vec![],
        ),
        case(
            "",
            stopping(Retire::Remove, true),
            retire(Retire::Keep),
            none,
            stopping(Retire::Remove, true),
            vec![],
        ),
        case(
            "",
            draining(Retire::Keep),
            retire(Retire::Remove),
            none,
            draining(Retire::Remove),
            vec![],
        ),
        case(
            "not killed yet",
            stopping(Retire::Keep, false),
            Input::KillDue,
            none,
            stopping(Retire::Keep, true),
            vec![E::KillTree(PID)],
        ),
        case(
            "",
            draining(Retire::Remove),
            Input::GroupGone,
            none,
            S::Stopped,
            vec![E::Gone(Retire::Remove)],
        ),
        case(
            "watchdog, silent a whole period",
            online(false),
            Input::WatchdogDue,
            |f| {
                f.watchdog = Some(SECOND);
                f.silent = 1500 * Duration::from_millis(1);
            },
            online(false),
            vec![
                E::Report("watchdog: no WATCHDOG=1 for 1500 ms (watchdog 1000 ms)".into()),
                E::Arm(Timer::WatchdogDue, SECOND),
            ],
        ),
        case(
            "watchdog",
            online(false),
            Input::WatchdogDue,
            |f| {
                f.watchdog = Some(SECOND);
                f.silent = Duration::from_millis(300);
            },
            online(false),
            vec![E::Arm(Timer::WatchdogDue, Duration::from_millis(700))],
        ),
    ]);
    all
}

#[test]
fn every_row_of_the_table_does_what_it_says() {
    let now = Instant::now();
    let cases = cases(now);
    for (n, c) in cases.iter().enumerate() {
        let mut f = facts(&c.policy);
        (c.facts)(&mut f);
        let row = TABLE
            .iter()
            .find(|r| r.on == c.input.on() && r.when == c.when && r.from.contains(&c.from.kind()))
            .unwrap_or_else(|| {
                panic!(
                    "case {n} ({:?} on {:?} when {:?}) has no row",
                    c.from, c.input, c.when
                )
            });
        assert_eq!(
            row.to.unwrap_or(c.from.kind()),
            c.to.kind(),
            "case {n}: {row:?}"
        );
        let (to, effects) = step(c.from, c.input, &f);
        assert_eq!((to, &effects), (c.to, &c.effects), "case {n}: {row:?}");
        // The actor stops at an effect after which the record may be gone
        // or another process's: nothing may follow it.
        let last = |e: &Effect| matches!(e, Effect::Spawn | Effect::Forget | Effect::Gone(_));
        let early = effects.iter().rev().skip(1).any(last);
        assert!(
            !early,
            "case {n}: {effects:?} goes on after the record's end"
        );
    }
    for row in TABLE {
        for from in row.from {
            let walked = cases
                .iter()
                .any(|c| c.input.on() == row.on && c.when == row.when && c.from.kind() == *from);
            assert!(walked, "no case walks {from:?} of {row:?}");
        }
    }
}

#[test]
fn what_the_table_does_not_name_changes_nothing() {
    let now = Instant::now();
    let policy = policy();
    let facts = facts(&policy);
    for kind in KINDS {
        for on in INPUTS {
            if TABLE.iter().any(|r| r.on == on && r.from.contains(&kind)) {
                continue;
            }
            let state = sample(kind, now);
            assert_eq!(
                step(state, input(on), &facts),
                (state, vec![]),
                "{kind:?} on {on:?}"
            );
        }
    }
    // Rows whose condition does not hold change nothing either.
    let ignored = [
        (
            State::Online {
                pid: PID,
                late: false,
            },
            Input::Ready,
        ),
        (
            State::Online {
                pid: PID,
                late: false,
            },
            Input::WatchdogDue,
        ),
        (
            State::Stopping {
                pid: PID,
                kill_at: now,
                then: Retire::Keep,
                killed: true,
            },
            Input::KillDue,
        ),
    ];
    for (state, input) in ignored {
        assert_eq!(
            step(state, input, &facts),
            (state, vec![]),
            "{state:?} on {input:?}"
        );
    }
}

#[test]
fn only_a_state_with_a_process_has_a_pid_and_each_predicate_has_one_meaning() {
    let now = Instant::now();
    for kind in KINDS {
        let state = sample(kind, now);
        let runs = matches!(kind, Launching | Online | Stopping);
        assert_eq!(state.pid().is_some(), runs, "{kind:?}");
        assert_eq!(state.is_live(), runs || kind == Draining, "{kind:?}");
        assert_eq!(
            state.is_serving(),
            matches!(kind, Launching | Online),
            "{kind:?}"
        );
        assert_eq!(
            state.is_active(),
            !matches!(kind, Stopped | Errored),
            "{kind:?}"
        );
    }
}

#[test]
fn a_restart_handed_over_waits_its_delay_again() {
    let ms = Duration::from_millis;
    let backoff = Policy {
        exp_backoff: Some(ms(100)),
        ..policy()
    };
    let delayed = Policy {
        restart_delay: ms(700),
        ..policy()
    };
    let grown = RunHistory {
        unstable_restarts: 2,
        backoff: Some(ms(150)),
    };
    let retry = supd_supervisor::transient::retry_delay;
    let table = [
        (&delayed, RunHistory::default(), 0, ms(700)),
        (&backoff, RunHistory::default(), 0, ms(100)),
        (&backoff, grown, 0, ms(150)),
        (&delayed, RunHistory::default(), 1, retry(0)),
        (&delayed, RunHistory::default(), 3, retry(2)),
    ];
    for (policy, history, spawn_failures, want) in table {
        let got = resumed_restart_delay(policy, history, spawn_failures);
        assert_eq!(got, want, "{history:?}, {spawn_failures} failed spawns");
    }
}
