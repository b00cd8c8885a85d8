//! kill -9 chaos: two `irsa controller` replicas elect a leader through a Lease; rounds of
//! binding creations, moves (a changed `spec.roleArn`) and deletions run against them, and in
//! some rounds the leader is SIGKILLed at a random moment of the round (in the middle of its
//! reconciles, or right after). The standby must take the Lease and finish the dead leader's
//! work — a binding created just before the kill becomes Ready and trusted — and after every
//! round: each role trusts exactly the subjects the bindings ask for plus its foreign
//! statements (byte-identical), no binding is stuck deleting, every binding is Ready.
//!
//! Seeded: `IRSA_CHAOS_SEED` replays a run (the seed is printed first, and again on failure).
//! The size is set by knobs; `make test` keeps it small, because each kill costs a failover (the
//! Lease is valid 15 s after its last renewal):
//!
//! | knob                  | make test | the full run |
//! |-----------------------|-----------|--------------|
//! | `IRSA_CHAOS_ROUNDS`   | 20        | 20           |
//! | `IRSA_CHAOS_KILLS`    | 5         | 20           |
//! | `IRSA_CHAOS_ROLES`    | 6         | 20           |
//! | `IRSA_CHAOS_BINDINGS` | 30        | 200          |
//!
//! `IRSA_CHAOS_BINDINGS` is how many bindings live at most; each round changes a quarter of
//! them (at least 4).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use irsa_e2e::converge::World;
use irsa_e2e::identity::RELEASE_NAMESPACE;
use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a count: {e}"))
    })
}

/// Prints the seed again when the test fails (this guard drops while panicking).
struct Seed(u64);

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos failed with seed {0}; replay it with IRSA_CHAOS_SEED={0}",
                self.0
            );
        }
    }
}

/// One replica: its process and the prefix of its Lease identity (`<HOSTNAME>_<random>`).
struct Replica {
    process: Process,
    prefix: String,
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get_opt(name).await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The binding `name`'s ServiceAccount, created with it: one each, so no two bindings claim
/// the same ServiceAccount's annotation.
async fn create_binding(world: &World, name: &str, role_arn: &str) {
    let sa: ServiceAccount = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .unwrap();
    Api::<ServiceAccount>::namespaced(world.cluster.client.clone(), &world.ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {name}: {e}"));
    support::create_binding(&world.cluster.client, &world.ns, name, role_arn, &[name]).await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn killed_leaders_lose_nothing() {
    let started = Instant::now();
    let seed = std::env::var("IRSA_CHAOS_SEED")
        .ok()
        .map_or_else(rand::random, |s| {
            s.parse()
                .unwrap_or_else(|e| panic!("IRSA_CHAOS_SEED={s:?}: {e}"))
        });
    println!("chaos seed {seed} (replay: IRSA_CHAOS_SEED={seed})");
    let seed_guard = Seed(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds = knob("IRSA_CHAOS_ROUNDS", 20);
    let kills = knob("IRSA_CHAOS_KILLS", 5).min(rounds);
    let max_bindings = knob("IRSA_CHAOS_BINDINGS", 30).max(1);
    let per_round = (max_bindings / 4).max(4);
    let world = World::new("irsa-chaos", knob("IRSA_CHAOS_ROLES", 6).max(2), 0).await;
    let roles: Vec<String> = world.roles.iter().map(|r| r.arn.clone()).collect();
    // Which rounds kill: `kills` of them, drawn from the seed.
    let mut kill_rounds = vec![false; rounds];
    for i in rand::seq::index::sample(&mut rng, rounds, kills) {
        kill_rounds[i] = true;
    }

    let lease = support::unique("irsa-chaos");
    let leases: Api<Lease> = Api::namespaced(world.cluster.client.clone(), RELEASE_NAMESPACE);
    let mut replicas: Vec<Replica> = ["chaos-a", "chaos-b"]
        .into_iter()
        .map(|name| Replica {
            process: Process::controller(&world.cluster, Some(&lease), name),
            prefix: format!("{name}_"),
        })
        .collect();
    let bindings = world.bindings();
    // name → role index of every live binding.
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = 0;

    for (round, kills_now) in kill_rounds.into_iter().enumerate() {
        let leader_identity = replicas[0]
            .process
            .wait_for(&format!("a leader (seed {seed})"), WAIT, || async {
                replicas[1].process.assert_running();
                holder(&leases, &lease).await
            })
            .await;
        let leader = usize::from(!leader_identity.starts_with(&replicas[0].prefix));
        let kill_at = kills_now.then(|| rng.random_range(0..per_round));
        let mut last_created = None;
        for op in 0..per_round {
            let roll = rng.random_range(0..10);
            if live.is_empty() || (roll < 5 && live.len() < max_bindings) {
                let name = format!("b-{next}");
                next += 1;
                let role = rng.random_range(0..roles.len());
                create_binding(&world, &name, &roles[role]).await;
                live.insert(name.clone(), role);
                last_created = Some(name);
            } else {
                let i = rng.random_range(0..live.len());
                let name = live.keys().nth(i).cloned().unwrap();
                if roll < 8 {
                    let role = (live[&name] + rng.random_range(1..roles.len())) % roles.len();
                    let patch = json!({"spec": {"roleArn": roles[role]}});
                    bindings
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap_or_else(|e| panic!("moving {name}: {e}"));
                    live.insert(name, role);
                } else {
                    bindings
                        .delete(&name, &DeleteParams::default())
                        .await
                        .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
                    live.remove(&name);
                }
            }
            if kill_at != Some(op) {
                continue;
            }
            // Somewhere in the leader's reconciles of what was just written.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
            let (dead, standby) = (&replicas[leader], &replicas[1 - leader]);
            println!(
                "round {round}: SIGKILL {leader_identity} after op {op} (last created: {last_created:?})"
            );
            dead.process.kill();
            // The standby, not the restarted replica, takes over: start that one only after.
            standby
                .process
                .wait_for(
                    &format!("{} to take the Lease over (seed {seed})", standby.prefix),
                    WAIT,
                    || async {
                        holder(&leases, &lease)
                            .await
                            .is_some_and(|h| h.starts_with(&standby.prefix))
                    },
                )
                .await;
            standby
                .process
                .wait_for(
                    &format!("{} to lead (seed {seed})", standby.prefix),
                    WAIT,
                    async || {
                        metrics::metric(
                            &standby.process.metrics().await,
                            "irsa_controller_is_leader",
                        ) == 1.0
                    },
                )
                .await;
            dead.process.restart();
        }
        let what = format!("round {round} to converge (seed {seed})");
        world.wait_converged(&replicas[0].process, &what).await;
        replicas[1].process.assert_running();
        println!(
            "round {round} converged at {:.0?}: {} bindings{}",
            started.elapsed(),
            live.len(),
            if kill_at.is_some() {
                ", after a kill"
            } else {
                ""
            }
        );
    }
    // Every binding the test thinks is live exists (and, converged, is Ready and trusted).
    let names: Vec<String> = bindings
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|b| kube::ResourceExt::name_any(&b))
        .collect();
    assert_eq!(
        names,
        live.keys().cloned().collect::<Vec<_>>(),
        "bindings (seed {seed})"
    );
    println!(
        "chaos: {rounds} rounds, {kills} kills, {next} bindings created, {:.0?}",
        started.elapsed()
    );
    world.cleanup().await;
    replicas.clear();
    drop(seed_guard);
}
