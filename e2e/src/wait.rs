//! The one wait of the test suites: poll a probe until it is done, fail the test at a deadline.
//!
//! Tests wait on something they can observe (a status, a metric, a log line, a counter of the
//! moto proxy), never for a fixed time. A test that proves something does NOT happen first
//! waits for a positive signal that it would have happened by then (a reconcile counted, a
//! later request answered), then asserts.

use std::time::Duration;

use tokio::time::Instant;

/// What a probe answers: `bool` (done or not) or `Option<T>` (done with a value).
pub trait Outcome {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// The first poll comes at once, the next after 10 ms, doubling up to [`MAX_INTERVAL`]: an
/// in-process condition is seen within milliseconds, a cluster is not polled more than once a
/// second.
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Polls `probe` until it is done and returns its value; panics naming `what` once `limit` has
/// passed (never reached unless the behaviour under test is broken: `limit` is a hang guard,
/// not a timing assertion).
pub async fn wait_for<R: Outcome>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + limit;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = probe().await.done() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_probe_is_done() {
        let mut n = 0;
        let got = wait_for("the third poll", Duration::from_secs(10), async || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for what never happens")]
    async fn panics_with_what_it_waited_for_at_the_deadline() {
        wait_for(
            "what never happens",
            Duration::from_millis(50),
            async || false,
        )
        .await;
    }
}
