//! Leader election against the real API server: of two `irsa controller` processes one holds
//! the Lease; when it dies (SIGKILL, no release) the standby takes over; when that one is
//! stopped gracefully (SIGTERM) it releases the Lease.

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::support::{self, ControllerProcess, WAIT, wait_for};

const LEASE: &str = irsa::controller::leader::DEFAULT_LEASE_NAME;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(LEASE).await.ok()??;
    Some(lease.spec?.holder_identity.unwrap_or_default())
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_standby_takes_over_when_the_leader_dies() {
    let support::ControllerCluster {
        settings,
        client,
        issuer,
        aws_env,
    } = support::controller_cluster().await;
    // A namespace of its own, so the Lease is this test's alone.
    let ns = support::create_namespace(&client, "irsa-e2e-leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    let a = ControllerProcess::start(&settings, &aws_env, &issuer.url, Some(&ns), "e2e-a");
    let b = ControllerProcess::start(&settings, &aws_env, &issuer.url, Some(&ns), "e2e-b");
    // Identities are `<HOSTNAME>_<random>`.
    let first = wait_for(
        &format!("a holder of Lease {ns}/{LEASE}"),
        WAIT,
        None,
        || async {
            a.assert_running();
            b.assert_running();
            holder(&leases).await.filter(|h| !h.is_empty())
        },
    )
    .await;
    let (leader, standby, standby_prefix) = if first.starts_with("e2e-a_") {
        (a, b, "e2e-b_")
    } else {
        assert!(first.starts_with("e2e-b_"), "unexpected holder {first}");
        (b, a, "e2e-a_")
    };
    println!("{first} leads; killing it");

    leader.kill();
    let second = wait_for(
        &format!("the standby ({standby_prefix}*) to take Lease {ns}/{LEASE} over"),
        WAIT,
        Some(&standby),
        || async {
            holder(&leases)
                .await
                .filter(|h| h.starts_with(standby_prefix))
        },
    )
    .await;
    println!("{second} took over; stopping it gracefully");

    standby.terminate();
    wait_for(
        &format!("{second} to release Lease {ns}/{LEASE} on SIGTERM"),
        WAIT,
        None,
        || async { holder(&leases).await.filter(String::is_empty) },
    )
    .await;
    drop((leader, standby));
    support::delete_namespace(&client, &ns).await;
}
