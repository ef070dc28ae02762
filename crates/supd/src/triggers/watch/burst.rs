//! Debouncing: the changes of one burst, ended by `watch_delay` without a
//! change that counts, and the restart reason that names them.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Waits for a change that counts, then until `delay` passes without
/// another one; the changes seen meanwhile. `interpret` turns each event
/// into the names of the changes it brings (none for one that does not
/// count). `None` once no event can come any more.
pub async fn quiet_after_changes<E, F>(
    events: &mut mpsc::UnboundedReceiver<E>,
    delay: Duration,
    mut interpret: impl FnMut(E) -> F,
) -> Option<Changes>
where
    F: Future<Output = Vec<String>>,
{
    let mut changes = Changes::default();
    let mut quiet_at: Option<Instant> = None;
    loop {
        let event = match quiet_at {
            None => events.recv().await?,
            Some(at) => tokio::select! {
                event = events.recv() => event?,
                () = tokio::time::sleep_until(at) => return Some(changes),
            },
        };
        let names = interpret(event).await;
        if !names.is_empty() {
            changes.names.extend(names);
            quiet_at = Some(Instant::now() + delay);
        }
    }
}

/// The changes of one burst, by name (relative to the app's cwd).
#[derive(Debug, Default)]
pub struct Changes {
    /// The changed paths, by name.
    pub names: BTreeSet<String>,
}

impl Changes {
    /// `watch: src/app.js changed`, or `watch: src/a.js and 2 other paths changed`.
    pub fn reason(&self) -> String {
        let mut names = self.names.iter();
        let first = names.next().map_or(".", String::as_str);
        match names.count() {
            0 => format!("watch: {first} changed"),
            1 => format!("watch: {first} and 1 other path changed"),
            more => format!("watch: {first} and {more} other paths changed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_changes() {
        let mut changes = Changes::default();
        changes.names.insert("src/a.js".into());
        assert_eq!(changes.reason(), "watch: src/a.js changed");
        changes.names.insert("src/b.js".into());
        assert_eq!(changes.reason(), "watch: src/a.js and 1 other path changed");
        changes.names.insert("src/c.js".into());
        assert_eq!(
            changes.reason(),
            "watch: src/a.js and 2 other paths changed"
        );
    }

    /// Sends `events` into a fresh channel, each after its delay (paused time).
    fn feed(events: &[(u64, &'static str)]) -> mpsc::UnboundedReceiver<&'static str> {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = events.to_vec();
        tokio::spawn(async move {
            for (after, name) in events {
                tokio::time::sleep(Duration::from_millis(after)).await;
                let _ = tx.send(name);
            }
            // Kept open, as a live watcher keeps its channel.
            std::future::pending::<()>().await;
        });
        rx
    }

    /// Names that count: all but those starting with `ignored`.
    async fn counted(name: &'static str) -> Vec<String> {
        if name.starts_with("ignored") {
            Vec::new()
        } else {
            vec![name.to_string()]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_the_delay_make_one_burst() {
        let start = Instant::now();
        let delay = Duration::from_millis(200);
        let mut rx = feed(&[(100, "a"), (150, "b"), (150, "a"), (1000, "c")]);
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["a", "b"]);
        // The last change came at 400 ms; quiet for 200 ms after it.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["c"]);
        assert_eq!(start.elapsed(), Duration::from_millis(1600));
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_changes_neither_start_nor_extend_the_delay() {
        let start = Instant::now();
        let delay = Duration::from_millis(200);
        let mut rx = feed(&[
            (50, "ignored1"),
            (50, "a"),
            (150, "ignored2"),
            (150, "ignored3"),
        ]);
        let burst = quiet_after_changes(&mut rx, delay, counted).await.unwrap();
        assert_eq!(burst.names.iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_ends_the_wait() {
        let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
        drop(tx);
        assert!(
            quiet_after_changes(&mut rx, Duration::from_millis(10), counted)
                .await
                .is_none()
        );
    }
}
