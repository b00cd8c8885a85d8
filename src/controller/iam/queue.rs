//! The worker's inbox: [`RoleQueue`] marks roles dirty (reconciled in the next pass) or waits
//! for one role's report.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::controller::policy::report::RoleReport;

/// A request to the worker (public so tests can stand in for the worker).
pub enum Msg {
    Dirty(String),
    Sync(String, oneshot::Sender<Arc<RoleReport>>),
}

/// Handle to mark roles dirty or wait for one to be reconciled. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RoleQueue {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Dirty(r) => write!(f, "Dirty({r})"),
            Msg::Sync(r, _) => write!(f, "Sync({r})"),
        }
    }
}

/// The worker was stopped; nothing can be reconciled any more.
#[derive(Debug, thiserror::Error)]
#[error("the IAM worker has stopped (controller shutting down)")]
pub struct Stopped;

impl RoleQueue {
    /// A queue and the receiving end of its requests, without a worker (tests answer them).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Reconcile `role` in the next pass (after the debounce).
    pub fn mark(&self, role: &str) {
        let _ = self.tx.send(Msg::Dirty(role.to_string()));
    }

    /// Reconcile `role` in the next pass and wait for its report; the pass reads the
    /// snapshot after this call, so it sees every change made before it.
    pub async fn sync(&self, role: &str) -> Result<Arc<RoleReport>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync(role.to_string(), tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}
