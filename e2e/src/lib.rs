//! The test harness of irsa's cluster journeys (`tests/journeys`, the `journeys` binary of this
//! package) and of the in-process integration tests of the root package (`tests/it`, which uses
//! it as a dev-dependency): every helper exists once, here.
//!
//! - [`wait`]: the one deadline-bound wait; [`process`]: the one child-process type (the
//!   `irsa webhook` and `irsa controller` processes the tests start); [`metrics`]: strict reads
//!   of a Prometheus text (a missing series fails the test).
//! - [`prometheus`]: promtool and Prometheus, for the chart's alert rules and dashboard.
//! - [`moto`]: the IAM/STS emulator behind a fault-injecting, counting proxy; [`verifier`]: the
//!   verifying STS of the whole-trip journeys.
//! - [`converge`]: the world of the fault and chaos journeys and its convergence check.
//! - [`support`], [`identity`], [`webhook`], [`kubelet`], [`trust_check`]: what the journeys
//!   need from a cluster: settings, clients, namespaces, the chart's identities and
//!   registrations, the kubelet stand-in, assertions on trust policies; [`sdk`]: the SDK
//!   probes a pod's process runs.

// Test code: a helper fails its test by panicking, like the test functions that call it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod converge;
pub mod identity;
pub mod kubelet;
pub mod metrics;
pub mod moto;
pub mod process;
pub mod prometheus;
pub mod sdk;
pub mod support;
pub mod trust_check;
pub mod verifier;
pub mod wait;
pub mod webhook;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Merges `from` into `into` as Helm merges values: objects key by key, recursively; anything
/// else (arrays included) replaces what was there.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to :0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("binding an ephemeral port on 127.0.0.1: {e}"))
}

/// The repository's root (charts/, crds/, config/, scripts/).
pub fn repo() -> &'static Path {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().unwrap_or(e2e)
}

/// The cargo profile directory the running test binary was built into (`target/debug`): the
/// test binaries live in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// The `irsa` binary under test: `IRSA_E2E_BIN`, else the one cargo built into the same
/// profile directory as this test binary. A workspace build (`cargo nextest run --workspace`,
/// what `make test` and `make e2e` run) builds both; `CARGO_BIN_EXE_irsa` exists only for the
/// root package's own tests.
pub fn irsa_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("IRSA_E2E_BIN").filter(|b| !b.is_empty()) {
        return bin.into();
    }
    let bin = profile_dir().join("irsa");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace (cargo nextest run --workspace ..., or cargo build --bin irsa), \
         or set IRSA_E2E_BIN",
        bin.display()
    );
    bin
}

/// `<target>/tmp`: logs and scratch files kept for post-mortems, gone with `cargo clean`.
pub fn target_tmp() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .map_or_else(std::env::temp_dir, |target| target.join("tmp"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}
