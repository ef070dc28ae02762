//! Log capture: nothing lost or reordered under a flood, tails, follow, flush.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{KillOnDrop, Supd, Tmpfs, fifo_reader, wait_for};

/// Writes `lines` numbered lines as fast as Python can, then waits.
fn flooder(supd: &Supd, name: &str, lines: usize) -> std::path::PathBuf {
    supd.write(
        &format!("{name}.py"),
        &format!(
            "import sys\nw = sys.stdout.write\nfor i in range({lines}):\n    w('line %d %s\\n' % (i, 'x' * 40))\nsys.stdout.flush()\nimport time\ntime.sleep(300)\n"
        ),
    )
}

/// Bytes of `lines` lines as [`flooder`] writes them.
fn flood_size(lines: usize) -> usize {
    lines * (5 + 1 + 40 + 1) + (0..lines).map(|i| i.to_string().len()).sum::<usize>()
}

#[test]
fn four_floods_arrive_whole_and_in_order_while_list_and_other_logs_keep_up() {
    let supd = Supd::new();
    let sizes = [1_000_000, 300_000, 300_000, 300_000];
    for (n, lines) in sizes.iter().enumerate() {
        let script = flooder(&supd, &format!("flood{n}"), *lines);
        supd.ok(&[
            "start",
            "python3",
            "--name",
            &format!("flood{n}"),
            "--",
            script.to_str().unwrap(),
        ]);
    }
    // A quiet app that stamps each line with the time it wrote it.
    let quiet = supd.write(
        "quiet.py",
        "import time\nwhile True:\n    print('tick', time.time_ns(), flush=True)\n    time.sleep(0.02)\n",
    );
    supd.ok(&[
        "start",
        "python3",
        "--name",
        "quiet",
        "--",
        quiet.to_str().unwrap(),
    ]);
    let mut slowest_list = Duration::ZERO;
    let mut worst_lag = Duration::ZERO;
    let mut lags_measured = 0;
    wait_for(
        Duration::from_secs(180),
        "every line of every flood",
        || {
            let started = Instant::now();
            supd.list();
            slowest_list = slowest_list.max(started.elapsed());
            // How old is the quiet app's newest line, as read now?
            if let Ok(text) = std::fs::read_to_string(supd.home().join("logs/quiet-out.log"))
                && let Some(ns) = text
                    .lines()
                    .last()
                    .and_then(|l| l.split(' ').nth(1)?.parse::<u128>().ok())
            {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                worst_lag = worst_lag.max(Duration::from_nanos(now.saturating_sub(ns) as u64));
                lags_measured += 1;
            }
            sizes
                .iter()
                .enumerate()
                .all(|(n, lines)| {
                    let log = supd.home().join(format!("logs/flood{n}-out.log"));
                    std::fs::metadata(&log).is_ok_and(|m| m.len() as usize >= flood_size(*lines))
                })
                .then_some(())
        },
    );
    for (n, lines) in sizes.iter().enumerate() {
        let text =
            std::fs::read_to_string(supd.home().join(format!("logs/flood{n}-out.log"))).unwrap();
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            assert_eq!(
                line,
                format!("line {i} {}", "x".repeat(40)),
                "flood{n}: line {i} intact and in order"
            );
            count += 1;
        }
        assert_eq!(count, *lines);
    }
    // Liveness bounds (the figures themselves are benchmarks): the control
    // socket and a quiet app's log kept up while four apps flooded.
    assert!(
        slowest_list < Duration::from_secs(2),
        "list took {slowest_list:?} during the floods"
    );
    // A bound over no measurement proves nothing: the quiet app's newest
    // line was read (and its age taken) at most polls of the floods.
    assert!(
        lags_measured >= 3,
        "the quiet app's lag was measured {lags_measured} times"
    );
    assert!(
        worst_lag < Duration::from_secs(2),
        "the quiet app's log lagged {worst_lag:?} (worst of {lags_measured})"
    );
}

#[test]
fn lines_out_err_and_date_format() {
    let supd = Supd::new();
    let script = supd.script(
        "talk.sh",
        "i=0; while [ $i -lt 30 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done; exec sleep 300",
    );
    supd.start_script("talk", &script, "");
    wait_for(Duration::from_secs(10), "30 err lines", || {
        let t = std::fs::read_to_string(supd.home().join("logs/talk-err.log")).ok()?;
        (t.lines().count() == 30).then_some(())
    });
    let out = supd.ok(&["logs", "talk", "--lines", "3", "--out", "--nostream"]);
    assert_eq!(out, "talk:0 | out 27\ntalk:0 | out 28\ntalk:0 | out 29\n");
    let err = supd.ok(&[
        "logs",
        "talk",
        "--lines",
        "2",
        "--err",
        "--raw",
        "--nostream",
    ]);
    assert_eq!(err, "err 28\nerr 29\n");
    let both = supd.ok(&["logs", "--lines", "1", "--nostream"]);
    assert_eq!(both, "talk:0 | out 29\ntalk:0 | err 29\n");
    let default = supd.ok(&["logs", "talk", "--out", "--nostream"]);
    assert_eq!(default.lines().count(), 15, "15 lines by default");

    supd.ok(&["flush", "talk"]);
    assert_eq!(supd.ok(&["logs", "talk", "--nostream"]), "");

    // log_date_format prefixes each line.
    let stamped = supd.script("stamp.sh", "echo hello; exec sleep 300");
    supd.start_script("stamp", &stamped, "log_date_format = \"%Y-%m-%d\"\n");
    let line = wait_for(Duration::from_secs(10), "stamped line", || {
        let t = std::fs::read_to_string(supd.home().join("logs/stamp-out.log")).ok()?;
        t.lines().next().map(str::to_string)
    });
    let (date, rest) = line.split_once(": ").unwrap();
    assert_eq!(rest, "hello");
    assert_eq!(date.len(), 10, "{line}");
    assert_eq!(&date[4..5], "-");
}

#[test]
fn follow_continues_across_restarts_and_tags_every_app() {
    let supd = Supd::new();
    let script = supd.script("tick.sh", "echo \"start $$\"; exec sleep 300");
    supd.ok(&["start", script.to_str().unwrap(), "--name", "tick"]);
    supd.wait_instance("tick", 0, "online", |p| p["status"] == "online");

    let mut cmd = supd.cmd(&["logs", "--lines", "1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut follower = KillOnDrop(cmd.spawn().unwrap());
    let (tx, rx) = mpsc::channel();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Whether the follower reads the file before or after a restart, the
    // new process's line is printed: in its one-line tail, or as followed.
    for round in 0..2 {
        supd.ok(&["restart", "tick"]);
        let pid = supd.instance("tick", 0)["pid"].as_u64().unwrap();
        let want = format!("tick:0 | start {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            match line {
                Ok(l) if l == want => break,
                Ok(_) => continue,
                Err(_) => panic!("round {round}: follow never printed {want:?}"),
            }
        }
    }
    // An app started after the follower is picked up too.
    let other = supd.script("late.sh", "echo late-line; exec sleep 300");
    supd.ok(&["start", other.to_str().unwrap(), "--name", "late"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l == "late:0 | late-line" => break,
            Ok(_) => continue,
            Err(_) => panic!("follow never showed the new app"),
        }
    }
}

/// The rotated files of a log file, oldest first (`.tmp` files being
/// compressed left out).
fn rotated_files(current: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = current.parent().unwrap();
    let name = current.file_name().unwrap().to_str().unwrap().to_string();
    let mut rotated: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(&format!("{name}.")) && !n.ends_with(".tmp")
        })
        .collect();
    rotated.sort();
    rotated
}

/// Reads a log file and its rotated files, oldest first (gzipped ones
/// decompressed), as one text, with the number of rotated files and how many
/// are gzipped; `None` if the files changed while they were read (a
/// rotation, or a compression finishing), so the caller looks again.
fn all_rotations(current: &std::path::Path) -> Option<(String, usize, usize)> {
    use std::io::Read;
    let rotated = rotated_files(current);
    let gz = rotated
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .count();
    let mut text = String::new();
    for p in &rotated {
        let f = std::fs::File::open(p).ok()?;
        if p.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .ok()?;
        } else {
            std::io::BufReader::new(f).read_to_string(&mut text).ok()?;
        }
    }
    text.push_str(&std::fs::read_to_string(current).ok()?);
    (rotated_files(current) == rotated).then_some((text, rotated.len(), gz))
}

#[test]
fn rotation_during_a_flood_keeps_every_line_and_the_retained_count() {
    let supd = Supd::new();
    let lines = 200_000;
    let script = flooder(&supd, "flood", lines);
    let file = supd.write(
        "rot.toml",
        &format!(
            "[[apps]]\nname = \"rot\"\nscript = \"python3\"\nargs = [\"{}\"]\nlog_max_size = \"1M\"\nlog_retain = 100\nlog_compress = true\n",
            script.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let current = supd.home().join("logs/rot-out.log");
    let last = format!("line {} {}", lines - 1, "x".repeat(40));
    let (text, rotated, _) = wait_for(Duration::from_secs(120), "every line, compressed", || {
        let (text, rotated, gz) = all_rotations(&current)?;
        (text.ends_with(&format!("{last}\n")) && gz == rotated).then_some((text, rotated, gz))
    });
    assert!(
        rotated >= 9,
        "about 10 MB at 1M per file: {rotated} rotated files"
    );
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            format!("line {i} {}", "x".repeat(40)),
            "line {i} whole and in order"
        );
    }
    assert_eq!(text.lines().count(), lines);

    // `logs --lines` reads back across the current and the rotated files.
    let tail_len = std::fs::read_to_string(&current).unwrap().lines().count();
    let want = tail_len + 50;
    let out = supd.ok(&[
        "logs",
        "rot",
        "--out",
        "--raw",
        "--lines",
        &want.to_string(),
        "--nostream",
    ]);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), want);
    assert_eq!(got[want - 1], last);
    assert_eq!(got[0], format!("line {} {}", lines - want, "x".repeat(40)));
}

#[test]
fn log_retain_keeps_that_many_rotated_files() {
    let supd = Supd::new();
    let script = supd.write(
        "burst.py",
        "import sys\nfor i in range(40000):\n    sys.stdout.write('%08d %s\\n' % (i, 'y' * 50))\nsys.stdout.flush()\nimport time\ntime.sleep(300)\n",
    );
    let file = supd.write(
        "keep.toml",
        &format!(
            "[daemon]\nlog_max_size = \"100K\"\nlog_retain = 3\n\n[[apps]]\nname = \"keep\"\nscript = \"python3\"\nargs = [\"{}\"]\n",
            script.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    let current = supd.home().join("logs/keep-out.log");
    wait_for(Duration::from_secs(60), "the last line", || {
        std::fs::read_to_string(&current)
            .ok()?
            .contains("00039999")
            .then_some(())
    });
    let (_, rotated, gz) = all_rotations(&current).unwrap();
    assert_eq!(
        (rotated, gz),
        (3, 0),
        "[daemon] log_retain = 3, no compression"
    );
}

#[test]
fn log_rotate_interval_rotates_on_schedule_and_keeps_every_line() {
    let supd = Supd::new();
    let script = supd.script(
        "slow.sh",
        "i=0; while :; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done",
    );
    // Every second (pm2-logrotate's optional seconds field), compressed.
    supd.start_script(
        "sched",
        &script,
        "log_rotate_interval = \"* * * * * *\"\nlog_compress = true\n",
    );
    let current = supd.home().join("logs/sched-out.log");
    let text = wait_for(Duration::from_secs(20), "three scheduled rotations", || {
        let (text, rotated, gz) = all_rotations(&current)?;
        (rotated >= 3 && gz == rotated).then_some(text)
    });
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, format!("line {i}"), "line {i} whole and in order");
    }
}

#[test]
fn a_slow_disk_slows_the_app_and_loses_nothing_while_others_go_on() {
    use std::io::Read;
    let supd = Supd::new();
    supd.ok(&["ping"]);
    // The app's log "file" is a FIFO this test reads from: a disk exactly
    // as slow as the test wants, here stopped until it starts reading.
    let logs = supd.home().join("logs");
    let mut reader = fifo_reader(&supd.log_fifo("slow"));
    let lines = 200_000;
    let done = supd.work().join("slow-done");
    let flood = supd.write(
        "slow.py",
        &format!(
            "import sys\nw = sys.stdout.write\nfor i in range({lines}):\n    w('line %d %s\\n' % (i, 'x' * 40))\nsys.stdout.flush()\nopen({done:?}, 'w').close()\nimport time\ntime.sleep(300)\n"
        ),
    );
    supd.ok(&[
        "start",
        "python3",
        "--name",
        "slow",
        "--",
        flood.to_str().unwrap(),
    ]);
    let quiet = supd.script(
        "quiet.sh",
        "i=0; while :; do echo \"q $i\"; i=$((i+1)); sleep 0.01; done",
    );
    supd.ok(&["start", quiet.to_str().unwrap(), "--name", "quiet"]);
    let pid = supd.instance("slow", 0)["pid"].as_u64().unwrap();

    // The disk takes nothing: the daemon's buffers fill, then the pipe, and
    // the app blocks in write — slowed, not dropped.
    wait_for(
        Duration::from_secs(30),
        "the app blocked writing its pipe",
        || {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
            wchan.contains("pipe_write").then_some(())
        },
    );
    assert!(!done.exists(), "the app could not have written everything");
    // Meanwhile the daemon answers and the other app's lines go on.
    let quiet_log = logs.join("quiet-out.log");
    let seen = std::fs::read_to_string(&quiet_log)
        .unwrap_or_default()
        .lines()
        .count();
    wait_for(Duration::from_secs(10), "the quiet app's lines", || {
        let now = std::fs::read_to_string(&quiet_log).ok()?.lines().count();
        (now > seen + 20).then_some(())
    });
    assert_eq!(supd.instance("slow", 0)["status"], "online");

    // The disk comes back: every line arrives, in order.
    let mut text = Vec::new();
    let want = flood_size(lines);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 1 << 16];
    while text.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} bytes arrived",
            text.len()
        );
        match reader.read(&mut buf) {
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
    let text = String::from_utf8(text).unwrap();
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, format!("line {i} {}", "x".repeat(40)), "line {i}");
    }
    assert_eq!(text.lines().count(), lines);
    wait_for(Duration::from_secs(10), "the app to finish", || {
        done.exists().then_some(())
    });
}

#[test]
fn a_log_file_that_is_a_fifo_nobody_reads_is_refused_without_stopping_the_daemon() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let fifo = supd.log_fifo("stuck");
    let err = supd.fails(&["start", "sleep", "--name", "stuck", "--", "300"]);
    assert!(
        err.contains("app \"stuck\"") && err.contains(fifo.to_str().unwrap()),
        "{err}"
    );
    // The daemon did not wait for a reader: it answers and starts others.
    supd.ok(&["start", "sleep", "--name", "fine", "--", "300"]);
    assert_eq!(supd.instance("fine", 0)["status"], "online");
    supd.ok(&["kill"]);
}

#[test]
fn a_full_disk_never_stops_the_app_and_writing_resumes() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let logs = supd.home().join("logs");
    // A disk that fills up (a link to /dev/full would be refused: see
    // tests/home.rs).
    let disk = Tmpfs::mount(&logs, "16k");
    let current = logs.join("full-out.log");
    let script = supd.script(
        "talk.sh",
        "i=0; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.002; done",
    );
    supd.ok(&["start", script.to_str().unwrap(), "--name", "full"]);
    let pid = supd.instance("full", 0)["pid"].clone();
    let problem = wait_for(Duration::from_secs(20), "the problem shown", || {
        supd.show("full")["log_problem"]
            .as_str()
            .map(str::to_string)
    });
    assert!(problem.contains("No space left on device"), "{problem}");
    let daemon_log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(
        daemon_log.contains("No space left on device"),
        "reported in the daemon log"
    );
    let full = std::fs::metadata(&current).unwrap().len();
    // Space returns.
    disk.resize("1m");
    wait_for(Duration::from_secs(20), "the problem cleared", || {
        supd.show("full")["log_problem"].is_null().then_some(())
    });
    wait_for(Duration::from_secs(20), "writing resumed", || {
        (std::fs::metadata(&current).ok()?.len() > full + 1000).then_some(())
    });
    let daemon_log = std::fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(daemon_log.contains("lines were dropped"), "{daemon_log}");
    let row = supd.instance("full", 0);
    assert_eq!(row["status"], "online");
    assert_eq!(row["pid"], pid, "the app was never restarted");
}

#[test]
fn json_grep_and_timestamp_output() {
    let supd = Supd::new();
    let script = supd.script(
        "mix.sh",
        "echo 'hello 1'; echo 'bye 2'; echo 'oops' >&2; exec sleep 300",
    );
    supd.ok(&["start", script.to_str().unwrap(), "--name", "mix"]);
    wait_for(Duration::from_secs(10), "the err line", || {
        std::fs::read_to_string(supd.home().join("logs/mix-err.log"))
            .ok()?
            .contains("oops")
            .then_some(())
    });
    let out = supd.ok(&["logs", "--json", "--nostream"]);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 3, "{out}");
    assert!(
        records
            .iter()
            .all(|r| r["app"] == "mix" && r["time"].is_string() && r["instance"] == 0)
    );
    assert!(
        records
            .iter()
            .any(|r| r["stream"] == "err" && r["message"] == "oops")
    );
    assert!(
        records
            .iter()
            .any(|r| r["stream"] == "out" && r["message"] == "bye 2")
    );

    assert_eq!(
        supd.ok(&["logs", "mix", "--grep", "^b.e", "--nostream"]),
        "mix:0 | bye 2\n"
    );
    let err = supd.fails(&["logs", "mix", "--grep", "(", "--nostream"]);
    assert!(err.contains("--grep"), "{err}");

    let stamped = supd.ok(&[
        "logs",
        "mix",
        "--out",
        "--timestamp",
        "--lines",
        "1",
        "--nostream",
    ]);
    let (date, rest) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(date.len(), 10, "{stamped}");
    assert!(rest.ends_with("bye 2"), "{stamped}");
    // Piped output is plain: no colour codes.
    assert!(!supd.ok(&["logs", "--nostream"]).contains('\u{1b}'));
}

#[test]
fn per_instance_files_carry_the_instance_number() {
    let supd = Supd::new();
    let script = supd.script("who.sh", "echo \"hi from $INSTANCE_ID\"; exec sleep 300");
    supd.start_script("who", &script, "instances = 2\nmerge_logs = false\n");
    for i in 0..2 {
        let path = supd.home().join(format!("logs/who-out-{i}.log"));
        wait_for(Duration::from_secs(10), "the instance's own file", || {
            std::fs::read_to_string(&path)
                .ok()?
                .contains(&format!("hi from {i}"))
                .then_some(())
        });
    }
    let out = supd.ok(&["logs", "who", "--out", "--nostream"]);
    assert!(
        out.contains("who:0 | hi from 0") && out.contains("who:1 | hi from 1"),
        "{out}"
    );
    let json = supd.ok(&["logs", "--out", "--json", "--nostream"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let i = v["instance"].as_u64().unwrap();
        assert_eq!(v["message"], format!("hi from {i}"));
    }
    assert!(
        !supd.home().join("logs/who-out.log").exists(),
        "no merged file"
    );
}

/// Reads a follower's stdout lines on a thread, so a test can wait for them
/// with a deadline.
fn lines_of(follower: &mut KillOnDrop) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Checks that `tagged` (`who:N | line K of N`) names the instance that
/// wrote the line; returns (N, K).
fn tagged_by_its_writer(tagged: &str) -> (u32, u32) {
    let (tag, text) = tagged.split_once(" | ").expect(tagged);
    let instance: u32 = tag.strip_prefix("who:").expect(tagged).parse().unwrap();
    let (k, n) = text
        .strip_prefix("line ")
        .and_then(|t| t.split_once(" of "))
        .expect(tagged);
    assert_eq!(n.parse::<u32>().unwrap(), instance, "{tagged}");
    (instance, k.parse().unwrap())
}

#[test]
fn merged_files_tag_every_line_with_its_instance_when_followed_and_across_rotations() {
    let supd = Supd::new();
    let go = supd.work().join("go");
    // Each instance says it is ready, waits for the test, then writes 300
    // lines into the one merged file the two share, rotated every 2 KB.
    let script = supd.script(
        "who.sh",
        &format!(
            "echo \"ready $INSTANCE_ID\"; while [ ! -e {go} ]; do sleep 0.02; done\n\
             i=0; while [ $i -lt 300 ]; do echo \"line $i of $INSTANCE_ID\"; i=$((i+1)); done; exec sleep 300",
            go = go.display()
        ),
    );
    supd.start_script(
        "who",
        &script,
        "instances = 2\nlog_max_size = \"2K\"\nlog_retain = 100\nlog_compress = true\n",
    );
    let current = supd.home().join("logs/who-out.log");
    wait_for(Duration::from_secs(10), "both ready lines", || {
        let text = std::fs::read_to_string(&current).ok()?;
        (text.lines().count() == 2).then_some(())
    });

    // The follower has read the file once its one-line tail is printed.
    let mut cmd = supd.cmd(&["logs", "who", "--out", "--lines", "1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut follower = KillOnDrop(cmd.spawn().unwrap());
    let rx = lines_of(&mut follower);
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.starts_with("who:") && first.contains("| ready "),
        "{first}"
    );
    std::fs::write(&go, "").unwrap();
    let mut next = [0u32; 2];
    let deadline = Instant::now() + Duration::from_secs(30);
    while next != [300, 300] {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("followed only {next:?} lines"));
        let (instance, k) = tagged_by_its_writer(&line);
        assert_eq!(k, next[instance as usize], "in order: {line}");
        next[instance as usize] += 1;
    }

    // Read back across the rotated (gzipped) files, with the same tags.
    wait_for(
        Duration::from_secs(30),
        "every rotated file compressed",
        || {
            // At least one rotation: the ready lines are written before the
            // rest, which is over 2K whatever chunks it arrives in.
            let (text, rotated, gz) = all_rotations(&current)?;
            (text.lines().count() == 602 && rotated == gz && gz >= 1).then_some(())
        },
    );
    let out = supd.ok(&["logs", "who", "--out", "--lines", "1000", "--nostream"]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.contains("| ready ")).collect();
    assert_eq!(lines.len(), 600, "{out}");
    let mut next = [0u32; 2];
    for line in lines {
        let (instance, k) = tagged_by_its_writer(line);
        assert_eq!(k, next[instance as usize], "in order: {line}");
        next[instance as usize] += 1;
    }
    let json = supd.ok(&[
        "logs",
        "who",
        "--out",
        "--json",
        "--lines",
        "1000",
        "--nostream",
    ]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let instance = v["instance"].as_u64().expect(line);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .ends_with(&format!(" {instance}")),
            "{line}"
        );
    }
}
