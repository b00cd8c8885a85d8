//! `irsa webhook`: the mutating admission webhook (docs/design.md §2.5–2.6).
//!
//! [`server`] serves `POST /mutate` over TLS and the admin port; [`review`] is the pure
//! AdmissionReview codec; [`decide`] turns one request into a call of the pure engine
//! ([`crate::mutate`]); [`cache`] finds the ServiceAccount; [`associations`] knows which
//! ServiceAccounts have a `PodIdentityAssociation`; [`tls`] and [`identities`] keep
//! their files current; [`selftls`] manages the webhook's own CA, certificate and caBundle
//! (`--tls-mode self`). `irsa webhook`'s flags become [`Options`] in
//! `crate::commands::webhook`.

pub mod associations;
pub mod cache;
pub mod connections;
pub mod decide;
pub mod identities;
pub mod metrics;
pub mod reload;
pub mod review;
pub mod selftls;
pub mod server;
pub mod service_accounts_file;
pub mod tls;

use std::time::Duration;

pub use self::selftls::SelfTls;
pub use self::{
    associations::Associations,
    cache::{Lookup, ServiceAccountCache},
    connections::ConnectionLimits,
    metrics::Metrics,
    server::{AppState, CertSource, Options, Running, admin_router, router, start},
};

/// In-flight admission requests get this long after SIGTERM. The API server gives up on a
/// webhook after at most 30s (10s by default), and the chart's terminationGracePeriodSeconds
/// is 30s, so 20s drains every request that can still matter.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
