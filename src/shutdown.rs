//! When a long-running command (webhook, controller) stops: SIGTERM (Kubernetes) or Ctrl-C.

/// Resolves on the first SIGTERM or Ctrl-C. A listener that cannot be installed is logged
/// and never fires, so the other still works. tokio delivers a signal to every listener, so
/// several callers may each await their own `signal()`.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
