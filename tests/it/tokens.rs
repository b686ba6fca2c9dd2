//! Issue 13: a Vault token for the job's own tools (`vault: {token: {…}}`), a child of the job's
//! login token, against a real OpenBao driven through every stage by the runner emulator.
//!
//! - the job's script runs `bao kv put`, `bao kv get` and `bao write pki/issue/<role>` with only
//!   the injected environment (the runner's own `BAO_*`/`VAULT_*` point elsewhere and are
//!   stripped); after cleanup the token fails lookup and the certificate's lease is gone;
//! - the token has exactly the policies asked for; a policy the admin does not allow, or one the
//!   login token lacks, is a build failure with its message;
//! - the token is in no log (printed, it is masked), argv, file, nor in the stages that do not
//!   receive it;
//! - a job cancelled mid-script: the token and the leases created through it are revoked;
//! - measurement: Vault requests per job and what is alive one second after the job, against a
//!   script that logs in by hand with `bao write auth/jwt/login`.
//!
//! The tests find the job's token by its accessor in the plain journal (the state dir) while the
//! job runs, and by the accessor cleanup names afterwards.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::core::{assert_nowhere, recording_shell, stage_records};
use crate::{job_state_of, world};
use leasehold_test_kit::bao::bao_binary;
use leasehold_test_kit::world::World;
use leasehold_test_kit::{Cancel, JobBuilder, JobResult, RunOptions, scan, sha16, wait_for};

/// How long revocation Vault finishes in the background (a revoked token's leases) may take.
const REVOKE_GRACE: Duration = Duration::from_secs(10);

/// The role's own policy: it may create child tokens (with a subset of its policies).
const CI_POLICY: &str = r#"path "auth/token/create" { capabilities = ["update"] }"#;

/// The declaration most tests use: both policies, Vault's default one too.
const TOKEN_YAML: &str =
    "VAULT_TOKEN:\n  vault:\n    token:\n      policies: [app-rw, pki-issue]\n      ttl: 10m\n";

/// A world whose role `ci` has the policies `ci` (token creation), `app-rw` (KV v2 `kv/app/*`)
/// and `pki-issue` (`pki/issue/ci-web`, certificates with leases); the mounts exist.
fn token_world() -> Rc<World> {
    let world = world()
        .policy(&[CI_POLICY])
        .role(json!({"policies": ["ci", "app-rw", "pki-issue"]}))
        .start();
    let bao = &world.bao;
    bao.write_policy(
        "app-rw",
        r#"path "kv/data/app/*" { capabilities = ["create", "update", "read"] }"#,
    );
    bao.write_policy(
        "pki-issue",
        r#"path "pki/issue/ci-web" { capabilities = ["update"] }"#,
    );
    bao.write_policy(
        "other",
        r#"path "kv/data/other/*" { capabilities = ["read"] }"#,
    );
    bao.enable_kv("kv", 2);
    bao.enable_pki("1h");
    Rc::new(world)
}

/// The `bao` binary, quoted for a script line.
fn bao() -> String {
    format!("'{}'", bao_binary().display())
}

/// Script lines doing the job's work with the CLI and only its environment: write and read a KV
/// secret, issue a certificate (a lease owned by whichever token the CLI uses).
fn cli_work(marker: &str) -> Vec<String> {
    let b = bao();
    vec![
        format!("{b} kv put -mount=kv app/config greeting=hello-{marker} >/dev/null"),
        format!("echo \"kv-says-$({b} kv get -mount=kv -field=greeting app/config)\""),
        format!(
            "{b} write -field=serial_number pki/issue/ci-web common_name={marker}.ci.example.com ttl=10m >/dev/null && echo \"cert-$((40 + 2))-issued\""
        ),
    ]
}

/// A script line that waits (at most 60 s) until the test creates `stop`.
fn wait_for_file(stop: &Path) -> String {
    format!(
        "for i in $(seq 600); do [ -e '{}' ] && break; sleep 0.1; done",
        stop.display()
    )
}

/// The runner's own environment pointing a CLI at a wrong server with a wrong token: leasehold
/// strips both, so the script works only through what leasehold injects.
fn misleading_runner_env(opts: RunOptions) -> RunOptions {
    ["VAULT_ADDR", "BAO_ADDR"]
        .into_iter()
        .fold(opts, |o, k| o.env(k, "http://127.0.0.1:9"))
        .env("VAULT_TOKEN", "s.not-the-job-token")
        .env("BAO_TOKEN", "s.not-the-job-token")
}

/// The journal of the one job in the state dir, while it runs.
fn journal(world: &World) -> Option<Value> {
    let dir = world.leftover_states().into_iter().next()?;
    serde_json::from_slice(&std::fs::read(dir.join("journal.json")).ok()?).ok()
}

/// The accessor of the job's own token (journaled as delivered in `name`), once it exists.
fn journaled_token_accessor(world: &World, name: &str) -> Option<String> {
    journal(world)?["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["delivered_as"] == name)
        .and_then(|s| s["accessor"].as_str())
        .map(str::to_owned)
}

/// Token policies of the token with `accessor`, sorted.
fn policies_of(world: &World, accessor: &str) -> Vec<String> {
    let data = world
        .bao
        .lookup_token_by_accessor(accessor)
        .expect("the job's token exists while the job runs");
    let mut policies: Vec<String> = data["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    policies.sort();
    policies
}

/// What a job's callback saw while build_script ran.
#[derive(Default, Debug)]
struct Seen {
    accessor: Option<String>,
    policies: Vec<String>,
    ttl: u64,
    leases: usize,
}

/// A callback for build_script that waits until the job's token exists and (if `leases_under`)
/// a lease under that prefix does, records what it saw, and then lets the script go on by
/// creating `stop`.
fn observe(
    world: &Rc<World>,
    leases_under: Option<&'static str>,
    stop: PathBuf,
    seen: &Rc<std::cell::RefCell<Seen>>,
) -> impl FnMut(u32) + 'static {
    let (world, seen) = (Rc::clone(world), Rc::clone(seen));
    move |_pgid| {
        let accessor = wait_for("the job's token in the journal", REVOKE_GRACE, || {
            journaled_token_accessor(&world, "VAULT_TOKEN")
        });
        let leases = match leases_under {
            Some(prefix) => wait_for(
                "the job's certificate lease",
                Duration::from_secs(30),
                || {
                    let n = world.bao.list_leases(prefix).len();
                    (n > 0).then_some(n)
                },
            ),
            None => 0,
        };
        let mut seen = seen.borrow_mut();
        seen.policies = policies_of(&world, &accessor);
        seen.ttl = world
            .bao
            .lookup_token_by_accessor(&accessor)
            .and_then(|t| t["ttl"].as_u64())
            .unwrap_or_default();
        seen.accessor = Some(accessor);
        seen.leases = leases;
        std::fs::write(&stop, "go").expect("write stop file");
    }
}

#[test]
fn the_jobs_token_drives_the_bao_cli_and_dies_with_the_job() {
    let world = token_world();
    let stop = world.dir.path().join("stop");
    let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
    let mut script = cli_work("token");
    script.push(format!("echo \"addr-is-{}\"", "${BAO_ADDR#http://}"));
    script.push(wait_for_file(&stop));
    let job = world.job().secrets_yaml(TOKEN_YAML).script(script);
    let opts = misleading_runner_env(RunOptions::new()).while_stage_runs(
        "build_script",
        Duration::from_millis(100),
        observe(&world, Some("pki/issue/ci-web"), stop, &seen),
    );
    let outcome = world.runner().run_job(&job, opts);

    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    let log = &outcome.raw_log;
    assert!(log.contains("kv-says-hello-token"), "{log}");
    assert!(log.contains("cert-42-issued"), "{log}");
    let bare_addr = world.bao.addr().trim_start_matches("http://");
    assert!(
        log.contains(&format!("addr-is-{bare_addr}")),
        "BAO_ADDR is the token's server, and not masked: {log}"
    );
    assert!(
        log.contains("with BAO_TOKEN, VAULT_ADDR, BAO_ADDR in the same stages"),
        "{log}"
    );
    let stored = world.bao.ok("GET", "kv/data/app/config", None);
    assert_eq!(stored["data"]["data"]["greeting"], "hello-token");

    let seen = seen.borrow();
    let accessor = seen.accessor.clone().expect("observed the token");
    assert_eq!(
        seen.policies,
        ["app-rw", "default", "pki-issue"],
        "the policies asked for, and Vault's default one"
    );
    assert_eq!(seen.leases, 1, "the certificate's lease while the job ran");
    assert!(
        !log.contains(&accessor),
        "the token's accessor is not in the job log"
    );
    assert!(
        outcome.cleanup_output.contains(&format!(
            "revoked token {accessor} (job token for VAULT_TOKEN; with the leases created through it)"
        )),
        "{}",
        outcome.cleanup_output
    );
    assert!(
        world.bao.lookup_token_by_accessor(&accessor).is_none(),
        "the job's token fails lookup after cleanup"
    );
    wait_for("the certificate's lease revoked", REVOKE_GRACE, || {
        world
            .bao
            .list_leases("pki/issue/ci-web")
            .is_empty()
            .then_some(())
    });
    let revoked = world.bao.ok("LIST", "pki/certs/revoked", None);
    assert_eq!(
        revoked["data"]["keys"].as_array().map(Vec::len),
        Some(1),
        "revoking its lease revoked the certificate: {revoked}"
    );
    world.assert_revoked_and_clean(&outcome);
}

#[test]
fn the_token_has_exactly_the_policies_asked_for_and_the_admin_decides_which() {
    let world = token_world();

    // no_default_policy: exactly the policies asked for, nothing else.
    let stop = world.dir.path().join("stop");
    let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
    let job = world
        .job()
        .timeout(120)
        .secrets_yaml("VAULT_TOKEN:\n  vault:\n    token:\n      policies: [pki-issue, app-rw]\n      ttl: 2h\n      no_default_policy: true\n")
        .script([wait_for_file(&stop)]);
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(100),
        observe(&world, None, stop, &seen),
    );
    let outcome = world.runner().run_job(&job, opts);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert_eq!(seen.borrow().policies, ["app-rw", "pki-issue"]);
    let ttl = seen.borrow().ttl;
    assert!(
        (60..=120).contains(&ttl),
        "the 2 h asked for is capped by the job's 120 s timeout: {ttl}"
    );
    let accessor = seen.borrow().accessor.clone().expect("observed");
    assert!(
        outcome.cleanup_output.contains(&format!(
            "revoked token {accessor} (job token for VAULT_TOKEN; with the leases created through it) together with the login token it was created from"
        )),
        "without the default policy the token cannot revoke itself; its parent takes it along: {}",
        outcome.cleanup_output
    );
    assert!(world.bao.lookup_token_by_accessor(&accessor).is_none());
    world.assert_revoked_and_clean(&outcome);

    // A policy the admin does not let jobs ask for: refused before any login.
    world.write_config("[policy]\nallowed_token_policies = [\"app-*\"]\n");
    let logins_before = world.bao.count_logins("jwt");
    let outcome = world.run(&world.job().secrets_yaml(TOKEN_YAML));
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains(
            "secret VAULT_TOKEN: policy \"pki-issue\" is not one this runner lets jobs put on their Vault token ([policy] allowed_token_policies = [\"app-*\"]); remove it from vault.token.policies or ask the runner admin to allow it"
        ),
        "{}",
        outcome.raw_log
    );
    assert_eq!(world.bao.count_logins("jwt"), logins_before, "no login");
    assert!(world.leftover_states().is_empty());

    // A policy the login token does not have: Vault refuses, the login is given back.
    world.write_config("");
    let tokens_before = world.bao.token_accessors();
    let outcome = world.run(
        &world
            .job()
            .secrets_yaml("VAULT_TOKEN:\n  vault: {token: {policies: [app-rw, other]}}\n"),
    );
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("secret VAULT_TOKEN: Vault refused to create the job's token (Vault says: child policies must be subset of parent); a job's token can have only policies its login token has, so ask for policies that role ci grants"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(
        world.bao.token_accessors(),
        tokens_before,
        "the login token was revoked"
    );

    // A role whose policy does not allow token creation: the message names the grant to add.
    world
        .bao
        .write_policy("ci", r#"path "kv/data/none" { capabilities = ["read"] }"#);
    let outcome = world.run(&world.job().secrets_yaml(TOKEN_YAML));
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("secret VAULT_TOKEN: permission denied (403) on auth/token/create: the role's policy does not grant it; add  path \"auth/token/create\" { capabilities = [\"update\"] }  to the policy of the role the job logs in with (Vault says: permission denied)"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(
        world.bao.token_accessors(),
        tokens_before,
        "the login token was revoked"
    );
}

#[test]
fn the_token_is_in_no_log_argv_file_or_stage_that_does_not_receive_it() {
    let world = token_world();
    let names = ["VAULT_TOKEN", "BAO_TOKEN", "VAULT_ADDR", "BAO_ADDR"];
    let shell = recording_shell(world.dir.path(), &names);
    world.write_config(&format!("[executor]\nshell = \"{}\"\n", shell.display()));
    let stop = world.dir.path().join("stop");
    let job = world
        .job()
        .secrets_yaml(&format!("{TOKEN_YAML}  stages: [build_script]\n"))
        .cache(true)
        .artifacts(true)
        .script([
            "echo \"token=$VAULT_TOKEN\"".to_owned(),
            "echo \"bao-token=$BAO_TOKEN\"".to_owned(),
            wait_for_file(&stop),
        ])
        .after_script([
            "echo \"after: ${VAULT_TOKEN:-none} ${BAO_TOKEN:-none} ${BAO_ADDR:-none}\"",
        ]);

    // Mid-script, recover the token as only root could (the stage's state key decrypts the
    // job's state), then look for it in every process's argv and in every file of the test
    // root and the runner's temp dirs.
    let found = Arc::new(Mutex::new((None::<String>, Vec::<String>::new())));
    let sink = Arc::clone(&found);
    let state_dir = world.state_dir();
    let root = world.dir.path().to_owned();
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(300),
        move |pgid| {
            let token = job_token_from_state(pgid, &state_dir);
            let mut found = sink.lock().expect("lock");
            for hit in scan::cmdlines_containing(&token) {
                found
                    .1
                    .push(format!("token in argv of {}: {}", hit.pid, hit.cmdline));
            }
            for path in scan::files_containing(&root, &token) {
                found.1.push(format!("token in {}", path.display()));
            }
            for entry in std::fs::read_dir(std::env::temp_dir())
                .into_iter()
                .flatten()
                .flatten()
            {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("custom-executor")
                {
                    for path in scan::files_containing(&entry.path(), &token) {
                        found
                            .1
                            .push(format!("token in runner file {}", path.display()));
                    }
                }
            }
            found.0 = Some(token);
            std::fs::write(&stop, "go").expect("stop file");
        },
    );
    let outcome = world.runner().run_job(&job, opts);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    let (token, hits) = std::mem::take(&mut *found.lock().expect("lock"));
    let token = token.expect("the test recovered the job's token");
    assert!(token.len() > 10, "a real token was recovered");
    assert_eq!(hits, Vec::<String>::new());

    let log = &outcome.raw_log;
    assert!(log.contains("token=[MASKED]"), "{log}");
    assert!(log.contains("bao-token=[MASKED]"), "{log}");
    assert!(log.contains("after: none none none"), "{log}");
    assert_nowhere(&outcome, &world, "the job's token", &token);

    let records = stage_records(&outcome, world.dir.path());
    let env = |value: &str| format!("env {} -", sha16(value.as_bytes()));
    let got = &records["build_script"];
    assert_eq!(got["VAULT_TOKEN"], env(&token));
    assert_eq!(got["BAO_TOKEN"], env(&token));
    assert_eq!(got["BAO_ADDR"], env(world.bao.addr()));
    assert_eq!(got["VAULT_ADDR"], env(world.bao.addr()));
    for (stage, got) in &records {
        if stage != "build_script" {
            assert!(
                got.values().all(|v| v == "absent"),
                "{stage} received the token or its companions: {got:?}"
            );
        }
    }
    assert!(records.contains_key("after_script") && records.contains_key("archive_cache"));
    assert!(!world.bao.token_valid(&token), "the token was revoked");
}

/// The job's token, decrypted from its state with the key in the stage process's environment.
fn job_token_from_state(pgid: u32, state_dir: &Path) -> String {
    use secrecy::ExposeSecret;
    job_state_of(pgid, state_dir)
        .sessions
        .iter()
        .find(|s| s.delivered_as.as_deref() == Some("VAULT_TOKEN"))
        .expect("the job's token is in its state")
        .token
        .expose_secret()
        .to_owned()
}

#[test]
fn a_job_cancelled_mid_script_loses_its_token_and_what_it_created() {
    let world = token_world();
    let stop = world.dir.path().join("never");
    let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
    let mut script = cli_work("cancel");
    script.push("sleep 60".into());
    let job = world.job().secrets_yaml(TOKEN_YAML).script(script);
    // The callback returns once the certificate exists; the cancel (due at 200 ms) fires right
    // after it, while the script sleeps.
    let opts = RunOptions::new()
        .while_stage_runs(
            "build_script",
            Duration::from_millis(100),
            observe(&world, Some("pki/issue/ci-web"), stop, &seen),
        )
        .cancel(Cancel::abort("build_script", Duration::from_millis(200)));
    let outcome = world.runner().run_job(&job, opts);

    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains("cert-42-issued"),
        "{}",
        outcome.raw_log
    );
    let seen = seen.borrow();
    assert_eq!(seen.leases, 1);
    let accessor = seen.accessor.clone().expect("observed");
    assert!(
        outcome.cleanup_output.contains(&format!(
            "revoked token {accessor} (job token for VAULT_TOKEN"
        )),
        "{}",
        outcome.cleanup_output
    );
    assert!(world.bao.lookup_token_by_accessor(&accessor).is_none());
    wait_for("the certificate's lease revoked", REVOKE_GRACE, || {
        world
            .bao
            .list_leases("pki/issue/ci-web")
            .is_empty()
            .then_some(())
    });
    world.assert_revoked_and_clean(&outcome);
}

#[test]
fn the_token_is_renewed_while_the_job_runs_unless_it_may_not_renew_itself() {
    let world = token_world();
    let b = bao();
    let script = |marker: &str| {
        [
            format!("{b} kv put -mount=kv app/config greeting=hello-{marker} >/dev/null"),
            "sleep 9".to_owned(),
            format!(
                "if {b} kv get -mount=kv -field=greeting app/config >/dev/null 2>&1; then echo \"{marker}-still-$((1 + 1))-valid\"; else echo \"{marker}-token-$((0))-expired\"; fi"
            ),
        ]
    };
    // A 5 s token outlives a 9 s pause: renewed with the job's other credentials.
    let job = world
        .job()
        .secrets_yaml("VAULT_TOKEN:\n  vault: {token: {policies: [app-rw], ttl: 5s}}\n")
        .script(script("renewed"));
    let outcome = world.run(&job);
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains("renewed-still-2-valid"),
        "{}",
        outcome.raw_log
    );
    assert!(
        world
            .bao
            .count_requests("update", |p| p == "auth/token/renew-self")
            >= 1,
        "the job's token was renewed (the 10-minute login token was not due): {:?}",
        world.bao.audited_requests()
    );
    world.assert_revoked_and_clean(&outcome);

    // Without the default policy it may not renew itself: one warning that says when it ends
    // and what to change, and it does end then.
    let job = world
        .job()
        .secrets_yaml("VAULT_TOKEN:\n  vault: {token: {policies: [app-rw], ttl: 5s, no_default_policy: true}}\n")
        .script(script("unrenewed"));
    let outcome = world.run(&job);
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains("unrenewed-token-0-expired"),
        "{}",
        outcome.raw_log
    );
    let warning =
        "WARNING: leasehold: the Vault token in VAULT_TOKEN may not renew itself and expires at ";
    assert_eq!(
        outcome.raw_log.matches(warning).count(),
        1,
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("leave no_default_policy off, or add  path \"auth/token/renew-self\" { capabilities = [\"update\"] }  to one of its policies"),
        "{}",
        outcome.raw_log
    );
    world.assert_revoked_and_clean(&outcome);
}

#[test]
fn the_reaper_revokes_and_names_the_token_of_a_crashed_job() {
    let world = token_world();
    let token_file = world.dir.path().join("reaper-token");
    world.write_config(&format!(
        "[reaper]\ntoken_file = \"{}\"\n",
        token_file.display()
    ));
    let reaper_token = world.bao.reaper_token(json!({"ttl": "1h"}));
    std::fs::write(&token_file, reaper_token).expect("token file");

    // The run stage is SIGKILLed with no cleanup once the job's certificate exists (the callback
    // returns then, the kill is due at 200 ms), and the journal says what a cleanup that could not
    // reach Vault writes: the reaper acts at once, while the token still lives.
    let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
    let mut script = cli_work("crash");
    script.push("sleep 60".into());
    let job = world.job().secrets_yaml(TOKEN_YAML).script(script);
    let opts = RunOptions::new()
        .while_stage_runs(
            "build_script",
            Duration::from_millis(100),
            observe(
                &world,
                Some("pki/issue/ci-web"),
                world.dir.path().join("never"),
                &seen,
            ),
        )
        .kill_without_cleanup("build_script", Duration::from_millis(200));
    let outcome = world.runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Crashed, "{}", outcome.raw_log);
    let accessor = seen.borrow().accessor.clone().expect("observed");
    let state = world
        .leftover_states()
        .pop()
        .expect("the crashed job's state");
    let mut journal = journal(&world).expect("journal");
    journal["status"] = json!("cleanup_failed");
    std::fs::write(state.join("journal.json"), journal.to_string()).expect("journal");
    assert!(
        world.bao.lookup_token_by_accessor(&accessor).is_some(),
        "the job's token is alive before the reaper runs"
    );

    let out = world
        .command()
        .arg("reap")
        .output()
        .expect("run leasehold reap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // It had to take back credentials that outlived their job: exit 1, naming the job.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("still had 2 tokens and 0 leases"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "revoked token {accessor} (job token for VAULT_TOKEN)"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 reaped"), "{stdout}");
    assert!(world.bao.lookup_token_by_accessor(&accessor).is_none());
    wait_for("the certificate's lease revoked", REVOKE_GRACE, || {
        world
            .bao
            .list_leases("pki/issue/ci-web")
            .is_empty()
            .then_some(())
    });
    assert!(world.leftover_states().is_empty());
}

#[test]
fn requests_and_survivors_against_a_hand_written_login() {
    let world = token_world();
    let b = bao();
    type Pattern = (&'static str, JobBuilder);
    let patterns: [Pattern; 2] = [
        (
            "leasehold token",
            world.job().secrets_yaml(TOKEN_YAML).script(cli_work("ours")),
        ),
        (
            "hand-written login",
            world.job().script(
                [
                    format!("export BAO_ADDR={}", world.bao.addr()),
                    format!(
                        "export BAO_TOKEN=$({b} write -field=token auth/jwt/login role=ci jwt=\"$VAULT_ID_TOKEN\")"
                    ),
                ]
                .into_iter()
                .chain(cli_work("theirs")),
            ),
        ),
    ];
    let mut rows = Vec::new();
    for (label, job) in patterns {
        let tokens_before = world.bao.token_accessors();
        let leases_before = world.bao.list_leases("pki/issue/ci-web").len();
        let mark = world.bao.audited_requests().len();
        let outcome = world.run(&job);
        let requests = world.bao.requests_since(mark);
        assert!(outcome.is_success(), "{label}: {}", outcome.raw_log);
        assert!(outcome.raw_log.contains("cert-42-issued"), "{label}");
        std::thread::sleep(Duration::from_secs(1));
        let tokens = world
            .bao
            .token_accessors()
            .difference(&tokens_before)
            .count();
        let leases = world.bao.list_leases("pki/issue/ci-web").len() - leases_before;
        rows.push((label, requests, tokens, leases));
    }
    eprintln!(
        "Vault requests per job (kv put, kv get, pki issue with the bao CLI) and what is alive 1 s after the job:"
    );
    for (label, requests, tokens, leases) in &rows {
        let by = |what: &dyn Fn(&str) -> bool| requests.iter().filter(|(_, p)| what(p)).count();
        eprintln!(
            "  {label:<20} {:>2} requests = {} login + {} token create + {} job CLI + {} revocations; alive after 1 s: {tokens} token(s), {leases} lease(s)",
            requests.len(),
            by(&|p| p == "auth/jwt/login"),
            by(&|p| p == "auth/token/create"),
            by(&|p| p.starts_with("kv/")
                || p.starts_with("pki/")
                || p.starts_with("sys/internal/ui/mounts")),
            by(&|p| p.starts_with("auth/token/revoke") || p.starts_with("sys/leases/revoke")),
        );
        eprintln!("    {requests:?}");
    }
    let (ours, theirs) = (&rows[0], &rows[1]);
    assert_eq!((ours.2, ours.3), (0, 0), "leasehold leaves nothing alive");
    assert_eq!(
        (theirs.2, theirs.3),
        (1, 1),
        "a hand-written login leaves its token and lease"
    );
}
