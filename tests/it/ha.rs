//! Issue 12.1: an HA cluster replacing its active node under running jobs, and a redirect to an
//! address the admin did not list.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::world;
use leasehold_test_kit::cluster::Cluster;
use leasehold_test_kit::front::OtherApp;
use leasehold_test_kit::world::accessors_in;
use leasehold_test_kit::{JobResult, RunOptions, wait_for};

const POLICY: &[&str] = &[
    r#"path "kv/data/*" { capabilities = ["read"] }"#,
    r#"path "pki/issue/ci-web" { capabilities = ["update"] }"#,
    r#"path "sys/leases/revoke/pki/*" { capabilities = ["update"] }"#,
];

const SECRETS: &str = "\
DB_PASSWORD:
  vault: app/db/password@kv
TLS_CERT:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci-web
    field: certificate
    data: {common_name: app.ci.example.com}
    ttl: 10m
";

/// What leasehold logged about the requests that rode out the election: for each one that
/// failed before it succeeded, the milliseconds from its first failure to its success.
fn recoveries(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("Vault answered after ")?;
            let (_, rest) = rest.split_once(" failed attempts, ")?;
            rest.split_once(" ms after the first failure")?
                .0
                .parse()
                .ok()
        })
        .collect()
}

/// The acceptance test of issue 12.1: the active node of a 3-node raft cluster is SIGKILLed as
/// one job's prepare starts and while another job's cleanup is due. Both jobs pass on their
/// first prepare attempt (gitlab-runner's retry is not needed) and both cleanups revoke
/// everything themselves, so nothing is left for the reaper.
#[test]
fn jobs_ride_out_the_active_node_being_killed() {
    let mut cluster = Cluster::start();
    let first = cluster.leader();
    let mut world = world().on(cluster.bao(first)).policy(POLICY).start();
    world.bao.enable_kv("kv", 2);
    world
        .bao
        .kv_put("kv", 2, "app/db", json!({"password": "raft-hunter2"}));
    world.bao.enable_pki("1h");
    // Every node has the configuration before the first job (standbys serve some reads).
    for node in 0..3 {
        let bao = cluster.bao(node);
        wait_for("the secret on every node", Duration::from_secs(20), || {
            (bao.api("GET", "kv/data/app/db", None).0 == 200).then_some(())
        });
    }
    let nodes = cluster.addresses();
    world.write_config_with_vault(
        &nodes[0],
        &format!(
            "nodes = [{}]\nfailover_wait_seconds = 30\n",
            nodes
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "",
    );
    let killed_marker = world.dir.path().join("killed");
    let running_marker = world.dir.path().join("b-running");
    let opts = || RunOptions::new().env("LEASEHOLD_LOG", "info");

    // Job B: prepared before the kill; its script ends as soon as the leader is dead, so that
    // its cleanup runs during the election.
    let job_b = world.job().id(9101).secrets_yaml(SECRETS).script([
        format!("touch '{}'", running_marker.display()),
        format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done",
            killed_marker.display()
        ),
        "[ \"$(cat \"$DB_PASSWORD\")\" = raft-hunter2 ] || exit 21".to_owned(),
        "[ -f \"$TLS_CERT\" ] || exit 22".to_owned(),
    ]);
    let job_a = world.job().id(9102).secrets_yaml(SECRETS).script([
        "[ \"$(cat \"$DB_PASSWORD\")\" = raft-hunter2 ] || exit 31",
        "[ -f \"$TLS_CERT\" ] || exit 32",
    ]);
    let leader_pid = cluster.pid(first);
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (outcome_a, outcome_b, election) = std::thread::scope(|scope| {
        let world = &world;
        let job_b = &job_b;
        let cluster = &cluster;
        let b = scope.spawn(move || world.runner().run_job(job_b, opts().concurrent_id(1)));
        // The cluster's own view: from the kill to a live node saying it is active.
        let killed = killed_at.clone();
        let probe = scope.spawn(move || {
            let at = wait_for("the kill", Duration::from_secs(120), || {
                *killed.lock().expect("lock")
            });
            wait_for("a new active node", Duration::from_secs(60), || {
                cluster.active().filter(|&n| n != first)
            });
            at.elapsed()
        });
        wait_for("job B's script", Duration::from_secs(60), || {
            running_marker.exists().then_some(())
        });
        // Job A: the leader dies the moment its prepare starts.
        let (killed, marker) = (killed_at.clone(), killed_marker.clone());
        let a = world.runner().run_job(
            &job_a,
            opts().while_stage_runs("prepare_exec", Duration::ZERO, move |_| {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(leader_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill the active node");
                *killed.lock().expect("lock") = Some(Instant::now());
                std::fs::write(&marker, b"").expect("marker");
            }),
        );
        (a, b.join().expect("job B"), probe.join().expect("probe"))
    });
    cluster.kill(first);
    assert!(
        killed_at.lock().expect("lock").is_some(),
        "the leader was killed during job A's prepare"
    );
    let (new_leader, _) = cluster.wait_for_new_leader(Duration::from_secs(30));
    assert_ne!(new_leader, first);
    world.bao = cluster.bao(new_leader);

    for (name, outcome) in [("A", &outcome_a), ("B", &outcome_b)] {
        assert_eq!(
            outcome.result,
            JobResult::Success,
            "job {name}:\n{}",
            outcome.raw_log
        );
        assert_eq!(
            outcome.stages_named("prepare_exec").len(),
            1,
            "job {name} needed gitlab-runner's prepare retry:\n{}",
            outcome.raw_log
        );
        let cleanup = &outcome.cleanup_output;
        assert!(
            !cleanup.contains("could not revoke"),
            "job {name}:\n{cleanup}"
        );
        assert!(
            !cleanup.contains("leasehold reap"),
            "job {name}:\n{cleanup}"
        );
        assert!(
            cleanup.contains("revoked lease pki/issue/ci-web/"),
            "job {name}:\n{cleanup}"
        );
        let accessors = accessors_in(cleanup);
        assert_eq!(accessors.len(), 1, "job {name}:\n{cleanup}");
        assert!(
            world.bao.lookup_token_by_accessor(&accessors[0]).is_none(),
            "job {name}'s token survived"
        );
    }
    assert!(
        world.leftover_states().is_empty(),
        "{:?}",
        world.leftover_states()
    );
    assert_eq!(
        world.bao.list_leases("pki/issue/ci-web"),
        Vec::<String>::new()
    );

    // The figures for the closing note: what the jobs saw of the election.
    let seen_a = recoveries(&outcome_a.raw_log);
    let seen_b = recoveries(&outcome_b.cleanup_output);
    assert!(
        !seen_a.is_empty(),
        "job A's prepare never saw the election:\n{}",
        outcome_a.raw_log
    );
    assert!(
        !seen_b.is_empty(),
        "job B's cleanup never saw the election:\n{}",
        outcome_b.cleanup_output
    );
    eprintln!(
        "failover: new active node {} ms after the kill; job A prepare recovered after {seen_a:?} ms, \
         job B cleanup after {seen_b:?} ms (first failed request to success); runner-level prepare retries: {}",
        election.as_millis(),
        outcome_a.stages_named("prepare_exec").len() + outcome_b.stages_named("prepare_exec").len()
            - 2
    );
}

/// A node that answers every request with a redirect to `target`, as a compromised or
/// misconfigured standby could.
fn redirecting_node(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/v1/auth/jwt/login\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            let _ = conn.shutdown(Shutdown::Both);
        }
    });
    addr
}

/// The token may go to no address the admin did not list for the server: a redirect elsewhere
/// is refused with one line, and the target's listener receives nothing at all.
#[test]
fn a_redirect_to_an_unlisted_address_is_refused_and_the_target_receives_nothing() {
    let world = world().policy(POLICY).start();
    let elsewhere = OtherApp::start();
    let node = redirecting_node(elsewhere.addr().to_owned());
    world.write_config_with_vault(world.bao.addr(), &format!("nodes = [\"{node}\"]\n"), "");
    let outcome = world.run(&world.job().secrets_yaml(SECRETS));
    assert!(
        matches!(outcome.result, JobResult::SystemFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    let expected = format!(
        "Vault at {} (node {node}) redirected the request to http://{}, which is not an address listed for this \
         server, so leasehold sent the token nowhere; if it is a node of this server add it to nodes, else set \
         address to the active node or its load balancer",
        world.bao.addr(),
        elsewhere.addr()
    );
    assert!(outcome.raw_log.contains(&expected), "{}", outcome.raw_log);
    assert_eq!(
        elsewhere.connections(),
        0,
        "the unlisted address was contacted"
    );
    assert!(elsewhere.received().is_empty());
    assert!(world.leftover_states().is_empty());
}
