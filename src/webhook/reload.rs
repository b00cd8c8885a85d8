//! When to act on a watched file's new contents (certificate pair, identities file), and the
//! [`Reloading`] value that both keep in force.
//!
//! Writers are not atomic: a plain rewrite of `tls.crt` then `tls.key` shows a mismatched
//! pair for an instant, and a JSON file can be caught half-written. So a valid new content is
//! installed at once, but an invalid one is only reported (log + metric) if it is still there
//! on the next poll; each distinct broken content is reported once, not on every poll.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Runs `poll` every `interval`, forever (the certificate pair and the identities file are
/// both watched this way; a missed tick is not made up for). The caller spawns it into its
/// [`crate::supervise::Supervisor`]. `interval` must not be zero (`tokio::time::interval`
/// panics; the CLI refuses `--reload-interval 0`).
pub async fn polling(
    interval: std::time::Duration,
    mut poll: impl FnMut() + Send + 'static,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        poll();
    }
}

/// What the caller should do with the contents it just read.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<T, E> {
    /// Same as what was last installed or reported.
    Unchanged,
    /// New and valid: install it.
    Install(T),
    /// New and invalid, possibly mid-write: keep the current value, look again next poll.
    Wait,
    /// Invalid on two polls in a row: keep the current value and report this error.
    Reject(E),
}

/// A value built from a file's contents, swapped in place when new contents parse; readers
/// never wait for a reload.
#[derive(Debug)]
pub struct Reloading<T, C> {
    current: ArcSwap<T>,
    /// Contents in force or reported, so broken contents are reported once, not on every poll.
    tracker: Mutex<ChangeTracker<C>>,
}

impl<T, C: PartialEq> Reloading<T, C> {
    /// `value`, parsed from `contents`, is in force.
    pub fn new(value: T, contents: C) -> Self {
        Self {
            current: ArcSwap::from_pointee(value),
            tracker: Mutex::new(ChangeTracker::new(contents)),
        }
    }

    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Contents just read: installed when new and valid; the verdict says what happened.
    pub fn offer<E>(
        &self,
        contents: C,
        parse: impl FnOnce(&C) -> Result<T, E>,
    ) -> Verdict<Arc<T>, E> {
        // A poll that panicked left the tracker whole (it only swaps owned values).
        let mut tracker = match self.tracker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match tracker.observe(contents, parse) {
            Verdict::Install(value) => {
                let value = Arc::new(value);
                self.current.store(value.clone());
                Verdict::Install(value)
            }
            Verdict::Reject(err) => Verdict::Reject(err),
            Verdict::Wait => Verdict::Wait,
            Verdict::Unchanged => Verdict::Unchanged,
        }
    }
}

#[derive(Debug)]
struct ChangeTracker<C> {
    settled: C,
    suspect: Option<C>,
}

impl<C: PartialEq> ChangeTracker<C> {
    /// `settled`: the contents in force now.
    fn new(settled: C) -> Self {
        Self {
            settled,
            suspect: None,
        }
    }

    fn observe<T, E>(
        &mut self,
        contents: C,
        parse: impl FnOnce(&C) -> Result<T, E>,
    ) -> Verdict<T, E> {
        if contents == self.settled {
            self.suspect = None;
            return Verdict::Unchanged;
        }
        match parse(&contents) {
            Ok(value) => {
                self.settled = contents;
                self.suspect = None;
                Verdict::Install(value)
            }
            Err(err) if self.suspect.as_ref() == Some(&contents) => {
                self.settled = contents;
                self.suspect = None;
                Verdict::Reject(err)
            }
            Err(_) => {
                self.suspect = Some(contents);
                Verdict::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &&str) -> Result<usize, String> {
        s.parse().map_err(|_| format!("{s} is not a number"))
    }

    #[test]
    fn valid_changes_install_at_once_and_broken_ones_are_reported_once_when_stable() {
        let mut t = ChangeTracker::new("1");
        assert_eq!(t.observe("1", parse), Verdict::Unchanged);
        assert_eq!(t.observe("2", parse), Verdict::Install(2));
        // Half-written, then complete: never reported.
        assert_eq!(t.observe("3x", parse), Verdict::Wait);
        assert_eq!(t.observe("3", parse), Verdict::Install(3));
        // Broken and staying broken: reported once.
        assert_eq!(t.observe("x", parse), Verdict::Wait);
        assert_eq!(
            t.observe("x", parse),
            Verdict::Reject("x is not a number".into())
        );
        assert_eq!(t.observe("x", parse), Verdict::Unchanged);
        // A different broken content is a new problem.
        assert_eq!(t.observe("y", parse), Verdict::Wait);
        assert_eq!(
            t.observe("y", parse),
            Verdict::Reject("y is not a number".into())
        );
        // Back to a good one.
        assert_eq!(t.observe("4", parse), Verdict::Install(4));
    }

    #[test]
    fn reloading_keeps_the_value_in_force_until_new_contents_parse() {
        let r = Reloading::new(1, "1");
        assert_eq!(r.offer("x", parse), Verdict::Wait);
        assert_eq!(*r.current(), 1);
        assert_eq!(r.offer("2", parse), Verdict::Install(Arc::new(2)));
        assert_eq!(*r.current(), 2);
        assert_eq!(r.offer("2", parse), Verdict::Unchanged);
    }
}
