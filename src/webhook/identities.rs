//! The container-credentials identities file (`--container-credentials-config`): [`read`] for
//! `irsa mutate` and the webhook's start, [`WatchedIdentities`] to poll it like the certificate.
//! A file that stops parsing keeps the previous set in force (reported once it stays broken, see
//! [`super::reload`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    metrics::Metrics,
    reload::{Reloading, Verdict},
};
use crate::mutate::Identities;

#[derive(Debug)]
pub struct WatchedIdentities {
    path: Option<PathBuf>,
    current: Reloading<Identities, Vec<u8>>,
}

impl WatchedIdentities {
    /// A fixed set (no file): tests and the default of no container-credentials identities.
    pub fn fixed(identities: Identities) -> Self {
        Self {
            path: None,
            current: Reloading::new(identities, Vec::new()),
        }
    }

    /// Loads the file once; a missing or invalid file at startup is a configuration error.
    pub fn load(path: &Path) -> Result<Self, IdentitiesFileError> {
        let bytes = read_bytes(path)?;
        let identities = parse(path, &bytes)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            current: Reloading::new(identities, bytes),
        })
    }

    pub fn current(&self) -> Arc<Identities> {
        self.current.current()
    }

    /// Re-reads the file and installs it if it changed and parses; returns whether it did.
    pub fn reload_if_changed(&self, metrics: &Metrics) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let Ok(bytes) = std::fs::read(path) else {
            // Mid-swap or briefly absent: keep the current set and look again next tick.
            return false;
        };
        match self.current.offer(bytes, |b| parse(path, b)) {
            Verdict::Install(identities) => {
                tracing::info!(file = %path.display(), count = identities.len(), "container-credentials identities reloaded");
                metrics.identities_reloads.inc();
                true
            }
            Verdict::Reject(err) => {
                metrics.identities_reload_errors.inc();
                tracing::error!(error = %err, "keeping the previous container-credentials identities");
                false
            }
            Verdict::Wait | Verdict::Unchanged => false,
        }
    }
}

/// Why the identities file cannot be used: one wording for `irsa mutate` and the webhook.
#[derive(Debug, thiserror::Error)]
pub enum IdentitiesFileError {
    #[error("cannot read identities file {} (--container-credentials-config): {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("identities file {} is not UTF-8: {error}", path.display())]
    NotUtf8 {
        path: PathBuf,
        error: std::str::Utf8Error,
    },
    #[error(
        "identities file {}: {error} (expected {{\"identities\":[{{\"namespace\":..,\"serviceAccount\":..}}]}})",
        path.display()
    )]
    Invalid {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// Reads and parses the file once.
pub fn read(path: &Path) -> Result<Identities, IdentitiesFileError> {
    parse(path, &read_bytes(path)?)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, IdentitiesFileError> {
    std::fs::read(path).map_err(|error| IdentitiesFileError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Identities, IdentitiesFileError> {
    let text = std::str::from_utf8(bytes).map_err(|error| IdentitiesFileError::NotUtf8 {
        path: path.to_path_buf(),
        error,
    })?;
    Identities::parse(text).map_err(|error| IdentitiesFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })
}
