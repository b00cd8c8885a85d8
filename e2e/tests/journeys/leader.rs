//! Leader election against the real API server: of two `irsa controller` processes one holds
//! the Lease; when it dies (SIGKILL, no release) the standby takes over; when that one is
//! stopped gracefully (SIGTERM) it releases the Lease.

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT};
use irsa_e2e::wait::wait_for;

const LEASE: &str = irsa::controller::election::DEFAULT_LEASE_NAME;

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get_opt(name).await.ok()??;
    Some(lease.spec?.holder_identity.unwrap_or_default())
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_standby_takes_over_when_the_leader_dies() {
    let cluster = support::controller_cluster().await;
    // The chart's Role allows Leases in the release namespace only; a Lease name of its own
    // makes the election this test's alone.
    let ns = irsa_e2e::identity::RELEASE_NAMESPACE;
    let lease = support::unique(LEASE);
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);

    let a = Process::controller(&cluster, Some(&lease), "e2e-a");
    let b = Process::controller(&cluster, Some(&lease), "e2e-b");
    // Identities are `<HOSTNAME>_<random>`.
    let first = wait_for(&format!("a holder of Lease {ns}/{lease}"), WAIT, || async {
        a.assert_running();
        b.assert_running();
        holder(&leases, &lease).await.filter(|h| !h.is_empty())
    })
    .await;
    let (leader, standby, standby_prefix) = if first.starts_with("e2e-a_") {
        (a, b, "e2e-b_")
    } else {
        assert!(first.starts_with("e2e-b_"), "unexpected holder {first}");
        (b, a, "e2e-a_")
    };
    println!("{first} leads; killing it");

    leader.kill();
    let second = standby
        .wait_for(
            &format!("the standby ({standby_prefix}*) to take Lease {ns}/{lease} over"),
            WAIT,
            || async {
                holder(&leases, &lease)
                    .await
                    .filter(|h| h.starts_with(standby_prefix))
            },
        )
        .await;
    // Leading, not only holding: once its work runs, SIGTERM must release the Lease when that
    // work stops (a SIGTERM while it still settles into the Lease takes another path).
    standby
        .wait_for(&format!("{second} to lead"), WAIT, || async {
            metrics::metric(&standby.metrics().await, "irsa_controller_is_leader") == 1.0
        })
        .await;
    println!("{second} took over and leads; stopping it gracefully");

    standby.terminate();
    wait_for(
        &format!("{second} to release Lease {ns}/{lease} on SIGTERM"),
        WAIT,
        || async { holder(&leases, &lease).await.filter(String::is_empty) },
    )
    .await;
    drop((leader, standby));
    let _ = leases
        .delete(&lease, &kube::api::DeleteParams::default())
        .await;
}
