//! Long-running tasks, owned and joined: a watch, a file poller or a server that ends on its
//! own (an error, a panic, a stream that closed) is a failure of the whole process, which
//! must exit non-zero so that Kubernetes restarts it. A process that stays up with one of its
//! tasks dead (certificates no longer reloaded, roles no longer written while the Lease is
//! still renewed) looks healthy and is not.
//!
//! The webhook and the controller spawn every such task into a [`Supervisor`] and wait on
//! [`Supervisor::failed`] next to their shutdown signal.

use std::{any::Any, collections::HashMap, future::Future};

use tokio::task::{Id, JoinError, JoinSet};

/// Why a supervised task is no longer running.
#[derive(Debug, thiserror::Error)]
pub enum TaskEnded {
    #[error("background task `{task}` stopped unexpectedly")]
    Returned { task: &'static str },
    #[error("background task `{task}` failed: {error:#}")]
    Failed {
        task: &'static str,
        error: anyhow::Error,
    },
    #[error("background task `{task}` panicked: {message}")]
    Panicked { task: &'static str, message: String },
    #[error("background task `{task}` was cancelled")]
    Cancelled { task: &'static str },
}

impl TaskEnded {
    /// The name the task was spawned with.
    pub fn task(&self) -> &'static str {
        match self {
            Self::Returned { task }
            | Self::Failed { task, .. }
            | Self::Panicked { task, .. }
            | Self::Cancelled { task } => task,
        }
    }
}

/// How a task may end without that being a failure.
#[derive(Debug, Clone, Copy)]
enum Lifetime {
    /// Runs until shutdown: any end is a failure.
    UntilShutdown,
    /// May finish with `Ok` (a one-off step); an error or a panic is still a failure.
    Finite,
}

/// A set of named tasks. Dropping it aborts them all; [`Self::shutdown`] aborts and joins.
#[derive(Debug, Default)]
pub struct Supervisor {
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, (&'static str, Lifetime)>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that runs until shutdown: its end, whatever the reason, is a failure.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, (name, Lifetime::UntilShutdown));
    }

    /// Spawns a task that may finish on its own (`Ok`); an error or a panic is a failure.
    pub fn spawn_finite<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, (name, Lifetime::Finite));
    }

    /// Number of tasks still running (or finished but not yet seen by [`Self::failed`]).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Resolves when a task ends unexpectedly, with why; never resolves while none does
    /// (also when the set is empty), so it can sit in a `select!` beside the shutdown signal.
    pub async fn failed(&mut self) -> TaskEnded {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(err) => err.id(),
            };
            let (task, lifetime) = self
                .names
                .remove(&id)
                .unwrap_or(("unnamed", Lifetime::UntilShutdown));
            match joined {
                Ok((_, Ok(()))) => match lifetime {
                    Lifetime::Finite => continue,
                    Lifetime::UntilShutdown => return TaskEnded::Returned { task },
                },
                Ok((_, Err(error))) => return TaskEnded::Failed { task, error },
                Err(err) => return join_error(task, err),
            }
        }
    }

    /// Aborts every task and waits until all have ended.
    pub async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
        self.names.clear();
    }
}

fn join_error(task: &'static str, err: JoinError) -> TaskEnded {
    if err.is_panic() {
        TaskEnded::Panicked {
            task,
            message: panic_message(err.into_panic()),
        }
    } else {
        TaskEnded::Cancelled { task }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn forever() -> anyhow::Result<()> {
        std::future::pending().await
    }

    /// `failed()` must not resolve within a short wait.
    async fn quiet(s: &mut Supervisor) -> bool {
        tokio::time::timeout(Duration::from_millis(50), s.failed())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_task_that_returns_is_a_failure_naming_it() {
        let mut s = Supervisor::new();
        s.spawn("watch", forever());
        s.spawn("cert reload", async { Ok(()) });
        let ended = s.failed().await;
        assert!(
            matches!(
                ended,
                TaskEnded::Returned {
                    task: "cert reload"
                }
            ),
            "{ended}"
        );
        assert_eq!(
            ended.to_string(),
            "background task `cert reload` stopped unexpectedly"
        );
        assert!(quiet(&mut s).await, "the other task is still running");
    }

    #[tokio::test]
    async fn a_task_that_fails_or_panics_is_a_failure_naming_it() {
        let mut s = Supervisor::new();
        s.spawn("iam worker", async { anyhow::bail!("IAM is gone") });
        let ended = s.failed().await;
        assert_eq!(ended.task(), "iam worker");
        assert!(ended.to_string().contains("IAM is gone"), "{ended}");

        let mut s = Supervisor::new();
        s.spawn("reload", async {
            // What a zero `tokio::time::interval` period does.
            let _ = tokio::time::interval(Duration::ZERO);
            Ok(())
        });
        let ended = s.failed().await;
        assert!(
            matches!(ended, TaskEnded::Panicked { task: "reload", .. }),
            "{ended}"
        );
        assert!(ended.to_string().contains("`reload` panicked"), "{ended}");
    }

    #[tokio::test]
    async fn finite_tasks_may_finish_and_an_empty_set_never_fails() {
        let mut s = Supervisor::new();
        assert!(quiet(&mut s).await);
        s.spawn_finite("caches synced", async { Ok(()) });
        s.spawn("server", forever());
        assert!(quiet(&mut s).await);
        assert_eq!(s.len(), 1);
        s.spawn_finite("one-off", async { anyhow::bail!("broken") });
        assert_eq!(s.failed().await.task(), "one-off");
        s.shutdown().await;
        assert!(s.is_empty());
        assert!(quiet(&mut s).await);
    }
}
