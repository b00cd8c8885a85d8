//! The one child-process type of the test suites: the `irsa webhook` and `irsa controller`
//! processes the tests start, and the Prometheus that scrapes them ([`crate::prometheus`]).
//! Spawned with its arguments and environment, its output captured in a log file, killed on
//! drop, its log printed when the test fails; it can wait for its readiness and guard any wait
//! (a process that exits fails the wait at once, with its log).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::wait::{Outcome, wait_for};

/// How many log lines a failure shows.
const TAIL: usize = 200;

/// A child process of the test.
pub struct Process {
    /// `irsa controller leader-a`: for messages.
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    child: Mutex<Child>,
    log: PathBuf,
    /// Its admin port (`--metrics-listen`), `127.0.0.1:PORT`, when it has one.
    admin: Option<String>,
}

impl Process {
    /// `irsa ARGS` (the binary under test, [`crate::irsa_bin`]) named `name` (its log file is
    /// `<target>/tmp/<name>-<random>.log`), with `env` on top of the test's environment and
    /// `RUST_LOG` defaulting to `info,irsa=debug`. `admin`: the `--metrics-listen` address
    /// it was given, for [`Self::metrics_url`] and [`Self::wait_ready`].
    pub fn irsa<A, K, V>(
        name: &str,
        args: impl IntoIterator<Item = A>,
        env: impl IntoIterator<Item = (K, V)>,
        admin: Option<String>,
    ) -> Self
    where
        A: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut env: Vec<(OsString, OsString)> = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        if !env.iter().any(|(k, _)| k == "RUST_LOG") {
            let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,irsa=debug".into());
            env.push(("RUST_LOG".into(), level.into()));
        }
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
        let command = args
            .first()
            .map_or_else(String::new, |a| a.to_string_lossy().into_owned());
        Self::launch(
            format!("irsa {command} {name}"),
            crate::irsa_bin(),
            args,
            env,
            admin,
        )
    }

    /// Another program the tests run beside irsa (e.g. Prometheus), named `name` in messages
    /// and in its log file's name, with `env` on top of the test's environment.
    pub fn program<A, K, V>(
        name: &str,
        program: PathBuf,
        args: impl IntoIterator<Item = A>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        A: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let env = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        let args = args.into_iter().map(|a| a.as_ref().into()).collect();
        Self::launch(name.to_string(), program, args, env, None)
    }

    fn launch(
        name: String,
        program: PathBuf,
        args: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        admin: Option<String>,
    ) -> Self {
        let log = crate::target_tmp().join(format!(
            "{}-{}-{:08x}.log",
            name.replace(' ', "-"),
            std::process::id(),
            rand::random::<u32>()
        ));
        let child = spawn(&program, &args, &env, &log);
        let process = Self {
            name,
            program,
            args,
            env,
            child: Mutex::new(child),
            log,
            admin,
        };
        println!("{} started; log: {}", process.name, process.log.display());
        process
    }

    /// Starts the (killed or exited) process again with the same arguments, environment and
    /// ports; its output goes on in the same log.
    pub fn restart(&self) {
        self.kill();
        *self.child.lock().unwrap() = spawn(&self.program, &self.args, &self.env, &self.log);
    }

    /// SIGKILL and reap: the process dies without any cleanup, like a node that vanished.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM (what Kubernetes sends on a rolling update), without waiting for the exit.
    pub fn terminate(&self) {
        let pid = self.child.lock().unwrap().id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Waits (at most `limit`) until the process exits; its status.
    pub async fn exited(&self, limit: Duration) -> ExitStatus {
        wait_for(&format!("{} to exit", self.name), limit, async || {
            self.child.lock().unwrap().try_wait().unwrap()
        })
        .await
    }

    /// Panics with the log if the process exited.
    pub fn assert_running(&self) {
        let status = self.child.lock().unwrap().try_wait().unwrap();
        if let Some(status) = status {
            panic!(
                "{} exited with {status}; log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }

    /// [`wait_for`], failing at once (with the log) if the process exits meanwhile.
    pub async fn wait_for<R: Outcome>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl AsyncFnMut() -> R,
    ) -> R::Value {
        wait_for(what, limit, async || {
            self.assert_running();
            probe().await
        })
        .await
    }

    /// Waits until `/readyz` on its admin port answers 200.
    pub async fn wait_ready(&self, limit: Duration) {
        let readyz = format!("http://{}/readyz", self.admin());
        let http = reqwest::Client::new();
        self.wait_for(
            &format!("{} to be ready ({readyz})", self.name),
            limit,
            async || {
                http.get(&readyz)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
    }

    /// Waits until a line of its log contains `needle`; that line.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        self.wait_for(
            &format!("{} to log {needle:?}", self.name),
            limit,
            async || {
                self.log()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_string)
            },
        )
        .await
    }

    /// Its process id (the current one, after a restart).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Its admin port's `/metrics` URL.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.admin())
    }

    /// The text of its `/metrics`.
    pub async fn metrics(&self) -> String {
        crate::metrics::scrape(&self.metrics_url()).await
    }

    /// Its admin port (`--metrics-listen`), `127.0.0.1:PORT`: a scrape target.
    pub fn admin(&self) -> &str {
        self.admin
            .as_deref()
            .unwrap_or_else(|| panic!("{} was started without an admin port", self.name))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the {} log {} ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// `program ARGS` with `env`, its output appended to `log` (never the test's own pipes:
/// nextest treats a child that keeps them open as a leak).
fn spawn(program: &Path, args: &[OsString], env: &[(OsString, OsString)], log: &Path) -> Child {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
    let err = out.try_clone().unwrap();
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// [`wait_for`], guarded by `process` when there is one ([`Process::wait_for`]).
pub async fn wait_guarded<R: Outcome>(
    process: Option<&Process>,
    what: &str,
    limit: Duration,
    probe: impl AsyncFnMut() -> R,
) -> R::Value {
    match process {
        Some(process) => process.wait_for(what, limit, probe).await,
        None => wait_for(what, limit, probe).await,
    }
}
