//! Issue 3's acceptance: dynamic credentials live exactly as long as their job, against a real
//! OpenBao and a real PostgreSQL, driven through every stage by the gitlab-runner emulator.
//!
//! - one `database/creds/<role>` read (one lease) for `DB_USER` and `DB_PASS`, which the job's
//!   script uses to log in; after cleanup the PostgreSQL role and every lease and token are gone;
//! - the same after a failing script, a SIGTERM (cancel) mid-script, and a SIGKILLed run stage
//!   with no cleanup followed by `leasehold reap` (which leaves a running job alone);
//! - a 10 s lease (and a 12 s token) renewed through a 40 s job without restarting the script;
//! - 20 concurrent jobs with their own credentials and no lease left over;
//! - a PKI certificate issued through `data:` as a 0600 file, revoked at cleanup;
//! - a prepare that fails halfway, or is canceled halfway, gives back what it already obtained;
//! - measurements: cleanup time with 5 leases, Vault requests per job against gitlab-runner's
//!   per-field resolver.
//!
//! The tests never read secret values themselves: scripts use them and report results (or
//! hashes), and assertion messages print only the job log, which leasehold masks.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{leasehold_bin, world};
use leasehold_test_kit::issuer::{DEFAULT_AUD, bound_role};
use leasehold_test_kit::postgres::pg_bin_dir;
use leasehold_test_kit::world::POLICY;
use leasehold_test_kit::{
    Bao, Cancel, JobBuilder, JobOutcome, JobResult, RunOptions, World, wait_for,
};

/// How long revocation that Vault finishes asynchronously (leases of a revoked token) may take.
const REVOKE_GRACE: Duration = Duration::from_secs(10);

/// `(leases, PostgreSQL login roles)` counted while a stage ran.
type Sample = Rc<Cell<Option<(usize, usize)>>>;

/// A world with a database engine on a real PostgreSQL: the database roles
/// `(name, default_ttl, max_ttl)`, a policy that may read exactly their credentials and issue
/// `pki/issue/ci-web`, the JWT role bound to the default job, and `extra_config` in the config.
/// Shared (`Rc`) with the emulator's while-the-stage-runs callbacks, on the test's own thread.
fn lab(roles: &[(&str, &str, &str)], extra_config: &str) -> Rc<World> {
    let mut policy = vec![String::from(
        "path \"pki/issue/ci-web\" { capabilities = [\"update\"] }",
    )];
    for (name, _, _) in roles {
        policy.push(format!(
            "path \"database/creds/{name}\" {{ capabilities = [\"read\"] }}"
        ));
    }
    let world = world()
        .postgres()
        .policy(&policy)
        .role(bound_role(&[POLICY]))
        .config(extra_config)
        .vault_defaults()
        .no_dirs()
        .dir_prefix("leasehold-leases")
        .start();
    for (i, (name, ttl, max)) in roles.iter().enumerate() {
        if i == 0 {
            world
                .bao
                .enable_database_postgres(world.pg(), name, ttl, max);
        } else {
            world.bao.database_role(name, ttl, max);
        }
    }
    Rc::new(world)
}

/// A script line that logs into PostgreSQL with `$DB_USER` / `$DB_PASS` and prints
/// `login-ok-<marker>` only when that worked (the text is computed by the server, so the
/// echoed command line never contains it).
fn login_line(lab: &World, marker: &str) -> String {
    format!(
        "PGPASSWORD=\"$DB_PASS\" PGCONNECT_TIMEOUT=5 {} -X -h 127.0.0.1 -p {} -U \"$DB_USER\" -d postgres -tAc \"select 'login-' || 'ok-{marker}'\"",
        pg_bin_dir().join("psql").display(),
        lab.pg().port()
    )
}

/// PostgreSQL login roles other than the superuser (counted: their names are credentials).
fn login_role_count(lab: &World) -> usize {
    lab.pg().login_roles().len()
}

/// Runs `job` with `opts`, counting one second into build_script the leases under `prefix`
/// and the PostgreSQL login roles, so that a test knows its "all gone" checks can see them.
fn run_sampled(
    lab: &Rc<World>,
    job: &JobBuilder,
    opts: RunOptions,
    prefix: &str,
) -> (JobOutcome, Sample) {
    let slot = Rc::new(Cell::new(None));
    let (world, prefix, out) = (lab.clone(), prefix.to_owned(), slot.clone());
    let opts = opts.while_stage_runs("build_script", Duration::from_secs(1), move |_| {
        out.set(Some((
            world.bao.list_leases(&prefix).len(),
            world.pg().login_roles().len(),
        )));
    });
    (lab.runner().run_job(job, opts), slot)
}

/// Asserts that the job's credentials are gone: no lease under `prefix` nor under the JWT
/// login, no PostgreSQL login role, exactly the tokens of `tokens_before`, no job state.
/// Returns how long after the call the last of them disappeared (Vault revokes the leases of
/// a revoked token asynchronously).
fn assert_all_revoked(lab: &World, prefix: &str, tokens_before: &BTreeSet<String>) -> Duration {
    let started = Instant::now();
    wait_for(&format!("no lease under {prefix}"), REVOKE_GRACE, || {
        lab.bao.list_leases(prefix).is_empty().then_some(())
    });
    wait_for("no PostgreSQL login role", REVOKE_GRACE, || {
        (login_role_count(lab) == 0).then_some(())
    });
    wait_for("no job token lease", REVOKE_GRACE, || {
        lab.bao
            .list_leases("auth/jwt/login")
            .is_empty()
            .then_some(())
    });
    let elapsed = started.elapsed();
    assert_eq!(
        &lab.bao.token_accessors(),
        tokens_before,
        "a job token is still alive"
    );
    assert!(
        lab.leftover_states().is_empty(),
        "job state left behind: {:?}",
        lab.leftover_states()
    );
    elapsed
}

/// `DB_USER` and `DB_PASS` from one `database/creds/<role>` path, in the environment.
fn db_pair_yaml(role: &str) -> String {
    format!(
        "DB_USER:\n  vault: {{engine: {{name: generic, path: database}}, path: creds/{role}, field: username}}\n  file: false\n\
         DB_PASS:\n  vault: {{engine: {{name: generic, path: database}}, path: creds/{role}, field: password}}\n  file: false\n"
    )
}

fn reads_of(bao: &Bao, path: &str) -> usize {
    bao.count_requests("read", |p| p == path)
}

/// `leasehold --config <config> reap`.
fn reap(config: &Path) -> Output {
    Command::new(leasehold_bin())
        .arg("--config")
        .arg(config)
        .arg("reap")
        .output()
        .expect("run leasehold reap")
}

// --- one lease per credential, revoked at cleanup ----------------------------------------------

#[test]
fn one_lease_for_user_and_password_logs_in_and_is_revoked_at_cleanup() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let tokens_before = lab.bao.token_accessors();
    let job = lab
        .job()
        .secrets_yaml(&db_pair_yaml("app"))
        .script([login_line(&lab, "1"), "sleep 2".into()]);
    let (outcome, during) = run_sampled(&lab, &job, RunOptions::new(), "database");

    assert!(outcome.is_success(), "{}", outcome.log);
    assert_eq!(
        during.get(),
        Some((1, 1)),
        "(leases, roles) while the job ran"
    );
    assert!(
        outcome.stage("build_script").output.contains("login-ok-1"),
        "the script did not log in:\n{}",
        outcome.log
    );
    // One login, one read: both fields from the same response and lease.
    assert_eq!(lab.bao.count_logins("jwt"), 1);
    assert_eq!(
        reads_of(&lab.bao, "database/creds/app"),
        1,
        "{:?}",
        lab.bao.audited_requests()
    );
    let cleanup = outcome.stage("cleanup_exec");
    assert_eq!(cleanup.exit_code, 0, "{}", outcome.cleanup_output);
    assert!(
        outcome.cleanup_output.contains("(1 tokens, 1 leases)"),
        "{}",
        outcome.cleanup_output
    );
    let waited = assert_all_revoked(&lab, "database", &tokens_before);
    eprintln!("success: everything revoked {waited:?} after cleanup returned");
}

#[test]
fn failing_script_still_revokes() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let tokens_before = lab.bao.token_accessors();
    let job = lab.job().secrets_yaml(&db_pair_yaml("app")).script([
        login_line(&lab, "1"),
        "sleep 2".into(),
        "exit 3".into(),
    ]);
    let (outcome, during) = run_sampled(&lab, &job, RunOptions::new(), "database");

    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 3 },
        "{}",
        outcome.log
    );
    assert_eq!(
        during.get(),
        Some((1, 1)),
        "(leases, roles) while the job ran"
    );
    assert!(
        outcome.stage("build_script").output.contains("login-ok-1"),
        "{}",
        outcome.log
    );
    assert_eq!(reads_of(&lab.bao, "database/creds/app"), 1);
    assert_eq!(
        outcome.stage("cleanup_exec").exit_code,
        0,
        "{}",
        outcome.cleanup_output
    );
    let waited = assert_all_revoked(&lab, "database", &tokens_before);
    eprintln!("failing script: everything revoked {waited:?} after cleanup returned");
}

#[test]
fn sigterm_mid_script_still_revokes() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let tokens_before = lab.bao.token_accessors();
    let job = lab.job().secrets_yaml(&db_pair_yaml("app")).script([
        login_line(&lab, "1"),
        "sleep 60".into(),
        "echo not-reached".into(),
    ]);
    let started = Instant::now();
    let (outcome, during) = run_sampled(
        &lab,
        &job,
        RunOptions::new().cancel(Cancel::abort("build_script", Duration::from_secs(3))),
        "database",
    );

    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.log);
    assert_eq!(
        during.get(),
        Some((1, 1)),
        "(leases, roles) while the job ran"
    );
    let build = outcome.stage("build_script");
    assert!(build.sent_sigterm);
    assert!(
        !build.sent_sigkill,
        "the stage ignored SIGTERM:\n{}",
        outcome.log
    );
    assert!(build.output.contains("login-ok-1"), "{}", outcome.log);
    assert!(!build.output.contains("not-reached"));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        outcome.stage("cleanup_exec").exit_code,
        0,
        "{}",
        outcome.cleanup_output
    );
    let waited = assert_all_revoked(&lab, "database", &tokens_before);
    eprintln!("SIGTERM: everything revoked {waited:?} after cleanup returned");
}

// --- the reaper ---------------------------------------------------------------------------------

#[test]
fn crashed_job_is_reaped_and_a_running_job_is_left_alone() {
    let token_dir = tempfile::tempdir().expect("temp dir");
    let token_file = token_dir.path().join("reaper-token");
    let events = token_dir.path().join("events.jsonl");
    let lab = lab(
        &[("app", "5m", "1h")],
        &format!(
            "[leases]\nreap_grace_seconds = 0\n\n[reaper]\ntoken_file = \"{}\"\n\n[events]\nfile = \"{}\"\n",
            token_file.display(),
            events.display()
        ),
    );
    let reaper_token = lab
        .bao
        .reaper_token(json!({"period": "24h", "display_name": "leasehold-reaper"}));
    std::fs::write(&token_file, format!("{reaper_token}\n")).expect("token file");
    let tokens_before = lab.bao.token_accessors();

    // Job A: its timeout is 1 s as far as leasehold knows (the emulator enforces 60 s), and its
    // run stage is SIGKILLed with no cleanup, like a crashed runner host.
    let job_a = lab
        .job()
        .id(3001)
        .timeout(1)
        .secrets_yaml(&db_pair_yaml("app"))
        .script([login_line(&lab, "a"), "sleep 60".into()]);
    let outcome_a = lab.runner().run_job(
        &job_a,
        RunOptions::new()
            .job_timeout(Duration::from_secs(60))
            .kill_without_cleanup("build_script", Duration::from_millis(2500)),
    );
    assert_eq!(outcome_a.result, JobResult::Crashed, "{}", outcome_a.log);
    assert!(outcome_a.try_stage("cleanup_exec").is_none());
    assert!(
        outcome_a
            .stage("build_script")
            .output
            .contains("login-ok-a"),
        "{}",
        outcome_a.log
    );
    let states = lab.leftover_states();
    assert_eq!(states.len(), 1, "{states:?}");
    let journal: Value =
        serde_json::from_slice(&std::fs::read(states[0].join("journal.json")).expect("journal"))
            .expect("journal JSON");
    assert_eq!(journal["status"], "active", "{journal}");
    let lease_a = journal["leases"][0]["lease_id"]
        .as_str()
        .expect("lease journaled")
        .to_owned();
    let accessor_a = journal["sessions"][0]["accessor"]
        .as_str()
        .expect("accessor journaled")
        .to_owned();
    assert_eq!(
        lab.bao.list_leases("database/creds/app"),
        vec![lease_a.clone()]
    );
    assert_eq!(login_role_count(&lab), 1);
    // Over once its 1 s timeout (plus 0 s grace) has passed.
    let over_at = journal["created_at"].as_u64().expect("created_at") + 2;
    wait_for("job A's timeout to pass", Duration::from_secs(10), || {
        (unix_now() >= over_at).then_some(())
    });

    // Job B runs (1 h timeout) while the reaper runs; the reaper takes A and leaves B alone.
    let reaped: Arc<Mutex<Option<(Output, usize)>>> = Arc::default();
    let (pg_port, pg_password) = (lab.pg().port(), lab.pg().password().to_owned());
    let config = lab.config_path();
    let job_b = lab
        .job()
        .id(3002)
        .secrets_yaml(&db_pair_yaml("app"))
        .script([
            login_line(&lab, "b1"),
            "sleep 4".into(),
            login_line(&lab, "b2"),
        ]);
    let slot = reaped.clone();
    let outcome_b = lab.runner().run_job(
        &job_b,
        RunOptions::new().while_stage_runs("build_script", Duration::from_secs(1), move |_| {
            let out = reap(&config);
            // PostgreSQL roles left once the reaper returned: B's only.
            let roles = superuser_count_login_roles(pg_port, &pg_password);
            *slot.lock().expect("slot") = Some((out, roles));
        }),
    );
    assert!(outcome_b.is_success(), "{}", outcome_b.log);
    let build_b = &outcome_b.stage("build_script").output;
    assert!(
        build_b.contains("login-ok-b1") && build_b.contains("login-ok-b2"),
        "job B lost its credentials to the reaper:\n{}",
        outcome_b.log
    );
    let (out, roles_after_reap) = reaped.lock().expect("slot").take().expect("reaper ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Issue 12.5: credentials that outlived their job are what operators alert on: reap exits 1
    // and names the job; cleanup and reap each wrote one event line.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 job states examined, 1 still running (left alone), 1 reaped"),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("still had 1 tokens and 1 leases after its cleanup never ran; 2 revoked now, 0 still alive"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("revoked token {accessor_a}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("revoked lease {lease_a}")),
        "{stdout}"
    );
    assert_eq!(roles_after_reap, 1, "A's role dropped, B's kept: {stdout}");
    assert!(
        lab.bao.lookup_token_by_accessor(&accessor_a).is_none(),
        "A's token survived the reaper"
    );
    // B's state was untouched: its own cleanup found and revoked its token and lease.
    assert!(
        outcome_b.cleanup_output.contains("(1 tokens, 1 leases)"),
        "{}",
        outcome_b.cleanup_output
    );
    assert_all_revoked(&lab, "database", &tokens_before);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("event file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let of = |event: &str| {
        lines
            .iter()
            .filter(|l| l["event"] == event)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (reaped, cleaned) = (of("reap"), of("cleanup"));
    assert_eq!((reaped.len(), cleaned.len()), (1, 1), "{lines:?}");
    assert_eq!(reaped[0]["outcome"], "clean", "{lines:?}");
    assert_eq!(reaped[0]["tokens"]["revoked"], 1, "{lines:?}");
    assert_eq!(reaped[0]["leases"]["revoked"], 1, "{lines:?}");
    assert_eq!(cleaned[0]["outcome"], "clean", "{lines:?}");
    assert_eq!(cleaned[0]["leases"]["obtained"], 1, "{lines:?}");
    assert_ne!(reaped[0]["state_id"], cleaned[0]["state_id"]);
    let text = std::fs::read_to_string(&events).expect("event file");
    assert!(
        !text.contains("hvs.") && !text.contains("\"s."),
        "a token in the events: {text}"
    );

    // Nothing left for a second run.
    let again = reap(&lab.config_path());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("0 job states examined"), "{stdout}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn superuser_count_login_roles(port: u16, password: &str) -> usize {
    let out = Command::new(pg_bin_dir().join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-tAc"])
        .arg("SELECT count(*) FROM pg_roles WHERE rolcanlogin AND rolname <> 'postgres'")
        .env("PGPASSWORD", password)
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(usize::MAX)
}

// --- renewal ------------------------------------------------------------------------------------

#[test]
fn ten_second_lease_stays_valid_through_a_forty_second_job() {
    // Increments of at most 15 s: the lease is renewed several times during the job. The job's
    // Vault token lives 12 s: if it expired, Vault would revoke the lease with it.
    let lab = lab(
        &[("short", "10s", "1h")],
        "[leases]\nmax_increment_seconds = 15\n",
    );
    lab.bao.jwt_role(
        "jwt",
        "ci-short",
        json!({
            "bound_audiences": [DEFAULT_AUD],
            "user_claim": "user_login",
            "policies": ["ci"],
            "token_ttl": "12s",
            "token_max_ttl": "1h",
        }),
    );
    let tokens_before = lab.bao.token_accessors();
    let counter = lab.path("starts");
    let job = lab
        .job()
        .timeout(300)
        .variable("VAULT_AUTH_ROLE", "ci-short")
        .variable("COUNTER", &counter.display().to_string())
        .secrets_yaml(&db_pair_yaml("short"))
        .script([
            "echo started >> \"$COUNTER\"".into(),
            login_line(&lab, "early"),
            "sleep 34".into(),
            login_line(&lab, "late"),
            "sleep 5".into(),
        ]);
    let started = Instant::now();
    let outcome = lab.runner().run_job(&job, RunOptions::new());
    let took = started.elapsed();

    assert!(outcome.is_success(), "{}", outcome.log);
    let build = outcome.stage("build_script");
    assert!(build.duration >= Duration::from_secs(39), "{build:?}");
    assert!(build.output.contains("login-ok-early"), "{}", outcome.log);
    assert!(
        build.output.contains("login-ok-late"),
        "the credentials did not survive their 10 s TTL:\n{}",
        outcome.log
    );
    assert!(
        !outcome.log.contains("could not renew") && !outcome.log.contains("max TTL"),
        "{}",
        outcome.log
    );
    // Never restarted, never re-read.
    assert_eq!(outcome.stages_named("build_script").len(), 1);
    assert_eq!(
        std::fs::read_to_string(&counter).expect("counter"),
        "started\n"
    );
    assert_eq!(reads_of(&lab.bao, "database/creds/short"), 1);
    let renewals = lab
        .bao
        .count_requests("update", |p| p == "sys/leases/renew");
    let token_renewals = lab
        .bao
        .count_requests("update", |p| p == "auth/token/renew-self");
    eprintln!(
        "40 s job with a 10 s lease and a 12 s token: {renewals} lease renewals, {token_renewals} token renewals, \
         build_script {:?}, job {took:?}",
        build.duration
    );
    assert!(renewals >= 3, "only {renewals} lease renewals");
    assert!(token_renewals >= 3, "only {token_renewals} token renewals");
    assert_all_revoked(&lab, "database", &tokens_before);
}

// --- concurrency --------------------------------------------------------------------------------

#[test]
fn twenty_concurrent_jobs_get_their_own_credentials_and_leave_nothing() {
    const JOBS: usize = 20;
    let lab = lab(&[("app", "5m", "1h")], "");
    let tokens_before = lab.bao.token_accessors();
    let runner = lab.runner();
    let jobs: Vec<(JobBuilder, PathBuf)> = (0..JOBS)
        .map(|i| {
            let out = lab.path(&format!("user-hash-{i}"));
            let job = lab
                .job()
                .id(4000 + i as i64)
                .variable("OUT", &out.display().to_string())
                .secrets_yaml(&db_pair_yaml("app"))
                .script([
                    login_line(&lab, &format!("{i}")),
                    // A digest, so that the test compares users without seeing them.
                    "printf %s \"$DB_USER\" | sha256sum | cut -d' ' -f1 > \"$OUT\"".into(),
                ]);
            (job, out)
        })
        .collect();

    let started = Instant::now();
    let outcomes: Vec<JobOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(job, _)| {
                let runner = &runner;
                scope.spawn(move || runner.run_job(job, RunOptions::new()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("job thread"))
            .collect()
    });
    let took = started.elapsed();

    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.is_success(), "job {i}:\n{}", outcome.log);
        assert!(
            outcome
                .stage("build_script")
                .output
                .contains(&format!("login-ok-{i}")),
            "job {i}:\n{}",
            outcome.log
        );
        assert_eq!(
            outcome.stage("cleanup_exec").exit_code,
            0,
            "job {i}: {}",
            outcome.cleanup_output
        );
    }
    let digests: BTreeSet<String> = jobs
        .iter()
        .map(|(_, out)| {
            std::fs::read_to_string(out)
                .expect("digest")
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(digests.len(), JOBS, "two jobs shared a database user");
    assert_eq!(lab.bao.count_logins("jwt"), JOBS);
    assert_eq!(reads_of(&lab.bao, "database/creds/app"), JOBS);

    let leases_left = lab.bao.list_leases("database/creds/app").len();
    let tokens_left = lab.bao.list_leases("auth/jwt/login").len();
    let roles_left = login_role_count(&lab);
    let waited = assert_all_revoked(&lab, "database", &tokens_before);
    eprintln!(
        "{JOBS} concurrent jobs in {took:?}: right after the last cleanup {leases_left} database leases, \
         {tokens_left} token leases and {roles_left} PostgreSQL roles were left; 0 of each after {waited:?}"
    );
}

// --- PKI through data: --------------------------------------------------------------------------

#[test]
fn pki_certificate_issued_through_data_arrives_as_a_file_and_is_revoked() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let bao = &lab.bao;
    bao.enable_pki("1h");
    let tokens_before = lab.bao.token_accessors();
    let yaml = "\
TLS_CERT:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci-web
    field: certificate
    data: {common_name: app.ci.example.com}
    ttl: 10m
TLS_KEY:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci-web
    field: private_key
    data: {common_name: app.ci.example.com}
    ttl: 10m
";
    let job = lab.job().timeout(600).secrets_yaml(yaml).script([
        "case \"$TLS_CERT\" in /*) ;; *) exit 11 ;; esac",
        "[ -f \"$TLS_CERT\" ] || exit 12",
        "[ \"$(stat -c %a \"$TLS_CERT\")\" = 600 ] || exit 13",
        "[ \"$(head -n 1 \"$TLS_CERT\")\" = '-----BEGIN CERTIFICATE-----' ] || exit 14",
        // Certificate and key come from the same response.
        "[ \"$(openssl x509 -noout -pubkey -in \"$TLS_CERT\" | sha256sum)\" = \"$(openssl pkey -pubout -in \"$TLS_KEY\" | sha256sum)\" ] || exit 15",
        "echo \"cert-$((40 + 2))-ok\"",
        "sleep 2",
    ]);
    let (outcome, during) = run_sampled(&lab, &job, RunOptions::new(), "pki/issue/ci-web");

    assert!(outcome.is_success(), "{}", outcome.log);
    assert_eq!(
        during.get(),
        Some((1, 0)),
        "(leases, roles) while the job ran"
    );
    assert!(
        outcome.stage("build_script").output.contains("cert-42-ok"),
        "{}",
        outcome.log
    );
    assert_eq!(
        bao.count_requests("update", |p| p == "pki/issue/ci-web"),
        1,
        "{:?}",
        bao.audited_requests()
    );
    assert!(
        outcome.cleanup_output.contains("(1 tokens, 1 leases)"),
        "{}",
        outcome.cleanup_output
    );
    assert_all_revoked(&lab, "pki/issue/ci-web", &tokens_before);
    // Revoking the lease revoked the certificate.
    let revoked = bao.ok("LIST", "pki/certs/revoked", None);
    assert_eq!(
        revoked["data"]["keys"].as_array().map(Vec::len),
        Some(1),
        "{revoked}"
    );
}

// --- a failed prepare ---------------------------------------------------------------------------

#[test]
fn prepare_failing_halfway_revokes_what_it_obtained() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let tokens_before = lab.bao.token_accessors();
    let yaml = format!(
        "{}FORBIDDEN:\n  vault: {{engine: {{name: generic, path: database}}, path: creds/admin, field: password}}\n  file: false\n",
        db_pair_yaml("app")
    );
    let job = lab.job().secrets_yaml(&yaml).script(["echo never"]);
    let mark = lab.bao.audited_requests().len();
    let outcome = lab.runner().run_job(&job, RunOptions::new());

    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.log
    );
    assert!(
        outcome
            .log
            .contains("permission denied (403) on database/creds/admin"),
        "{}",
        outcome.log
    );
    assert_eq!(outcome.run_stage_names(), Vec::<&str>::new());
    // The database credential was obtained (a lease and a role existed), and given back by
    // prepare itself: its token is revoked, and cleanup found nothing left to revoke.
    let requests = lab.bao.requests_since(mark);
    let paths: Vec<&str> = requests.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths.iter().filter(|p| **p == "database/creds/app").count(),
        1,
        "{requests:?}"
    );
    assert_eq!(
        paths.last(),
        Some(&"auth/token/revoke-self"),
        "prepare did not give back its token: {requests:?}"
    );
    let lease_id = lab
        .bao
        .audit_records()
        .into_iter()
        .filter(|r| r["type"] == "response" && r["request"]["path"] == "database/creds/app")
        .find_map(|r| {
            r["response"]["secret"]["lease_id"]
                .as_str()
                .map(str::to_owned)
        })
        .expect("the database read created a lease");
    assert_eq!(
        outcome.stage("cleanup_exec").exit_code,
        0,
        "{}",
        outcome.cleanup_output
    );
    assert!(
        outcome.cleanup_output.contains("(0 tokens, 0 leases)"),
        "{}",
        outcome.cleanup_output
    );
    assert_all_revoked(&lab, "database", &tokens_before);
    let (status, _) = lab.bao.api(
        "PUT",
        "sys/leases/lookup",
        Some(json!({ "lease_id": lease_id })),
    );
    assert_eq!(status, 400, "lease {lease_id} still exists");
}

#[test]
fn prepare_canceled_halfway_revokes_what_it_obtained() {
    let lab = lab(&[("app", "5m", "1h")], "");
    // Issuing `slow` credentials takes 3 s: the cancel lands after the login and after the
    // `app` credentials exist, while the `slow` request is still in flight. `slow` has its own
    // connection: the plugin serializes credential creation per connection.
    lab.bao.ok(
        "POST",
        "database/config/pg-slow",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                lab.pg().port()
            ),
            "username": lab.pg().superuser(),
            "password": lab.pg().password(),
            "allowed_roles": "slow",
        })),
    );
    lab.bao.ok(
        "POST",
        "database/roles/slow",
        Some(json!({
            "db_name": "pg-slow",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                "SELECT pg_sleep(3);",
            ],
            "default_ttl": "5m",
            "max_ttl": "1h",
        })),
    );
    lab.bao.write_policy(
        "ci",
        "path \"database/creds/app\" { capabilities = [\"read\"] }\n\
         path \"database/creds/slow\" { capabilities = [\"read\"] }\n",
    );
    let tokens_before = lab.bao.token_accessors();
    let yaml = format!(
        "{}SLOW_USER:\n  vault: {{engine: {{name: generic, path: database}}, path: creds/slow, field: username}}\n  file: false\n",
        db_pair_yaml("app")
    );
    let job = lab.job().secrets_yaml(&yaml).script(["echo never"]);
    let outcome = lab.runner().run_job(
        &job,
        RunOptions::new().cancel(Cancel::abort("prepare_exec", Duration::from_millis(1500))),
    );

    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.log);
    assert!(outcome.stage("prepare_exec").sent_sigterm);
    assert_eq!(outcome.run_stage_names(), Vec::<&str>::new());
    assert_eq!(lab.bao.count_logins("jwt"), 1);
    assert_eq!(reads_of(&lab.bao, "database/creds/slow"), 1);
    let answer = |path: &str| {
        wait_for(
            &format!("Vault's answer on {path}"),
            Duration::from_secs(10),
            || {
                lab.bao
                    .audit_records()
                    .into_iter()
                    .find(|r| r["type"] == "response" && r["request"]["path"] == path)
            },
        )
    };
    // The app credentials were issued before the cancel (a lease and a PostgreSQL role existed).
    let app_lease = answer("database/creds/app")["response"]["secret"]["lease_id"]
        .as_str()
        .expect("the app credentials were issued")
        .to_owned();
    let slow = answer("database/creds/slow");
    eprintln!(
        "canceled prepare: app lease {app_lease}; the in-flight request got lease {} / error {}; cleanup said:\n{}",
        slow["response"]["secret"]["lease_id"], slow["error"], outcome.cleanup_output
    );
    assert_eq!(
        outcome.stage("cleanup_exec").exit_code,
        0,
        "cleanup could not revoke what the canceled prepare obtained:\n{}",
        outcome.cleanup_output
    );
    assert_all_revoked(&lab, "database", &tokens_before);
    let (status, _) = lab.bao.api(
        "PUT",
        "sys/leases/lookup",
        Some(json!({ "lease_id": app_lease })),
    );
    assert_eq!(status, 400, "lease {app_lease} still exists");
}

// --- measurements -------------------------------------------------------------------------------

#[test]
fn cleanup_of_five_leases_is_timed() {
    let roles = [
        ("r1", "5m", "1h"),
        ("r2", "5m", "1h"),
        ("r3", "5m", "1h"),
        ("r4", "5m", "1h"),
        ("r5", "5m", "1h"),
    ];
    let lab = lab(&roles, "");
    // A second role whose tokens may also revoke leases one by one (sys/leases/revoke).
    lab.bao.write_policy(
        "revoke-leases",
        "path \"sys/leases/revoke/*\" { capabilities = [\"update\"] }\n",
    );
    lab.bao
        .jwt_role("jwt", "ci-revoke", bound_role(&["ci", "revoke-leases"]));
    let yaml: String = (1..=5)
        .map(|i| {
            format!(
                "USER_{i}:\n  vault: {{engine: {{name: generic, path: database}}, path: creds/r{i}, field: username}}\n  file: false\n"
            )
        })
        .collect();
    let tokens_before = lab.bao.token_accessors();
    for role in ["ci", "ci-revoke"] {
        let mark = lab.bao.audited_requests().len();
        let job = lab
            .job()
            .variable("VAULT_AUTH_ROLE", role)
            .secrets_yaml(&yaml)
            .script(["echo five"]);
        let outcome = lab.runner().run_job(&job, RunOptions::new());
        assert!(outcome.is_success(), "{}", outcome.log);
        let cleanup = outcome.stage("cleanup_exec");
        assert_eq!(cleanup.exit_code, 0, "{}", outcome.cleanup_output);
        assert!(
            outcome.cleanup_output.contains("(1 tokens, 5 leases)"),
            "{}",
            outcome.cleanup_output
        );
        let requests = lab.bao.requests_since(mark);
        let lease_revokes = requests
            .iter()
            .filter(|(_, p)| p.starts_with("sys/leases/revoke/"))
            .count();
        assert_eq!(lease_revokes, 5, "{requests:?}");
        let waited = assert_all_revoked(&lab, "database", &tokens_before);
        eprintln!(
            "cleanup_exec with 5 leases (role {role}, sys/leases/revoke {}): {:?}; everything gone {waited:?} later",
            if role == "ci" {
                "denied, revoke-self revokes them"
            } else {
                "granted"
            },
            cleanup.duration
        );
    }
}

#[test]
fn vault_requests_per_job_against_the_per_field_resolver() {
    let lab = lab(&[("app", "5m", "1h")], "");
    lab.bao.enable_kv("kv", 2);
    lab.bao.kv_put(
        "kv",
        2,
        "app/config",
        json!({"api_user": "svc-api-user", "api_token": random_value()}),
    );
    let mut policy = String::from("path \"database/creds/app\" { capabilities = [\"read\"] }\n");
    policy.push_str("path \"kv/data/app/config\" { capabilities = [\"read\"] }\n");
    lab.bao.write_policy("ci", &policy);

    // The same four secrets: two fields of one database credential, two fields of one KV secret.
    let leasehold_yaml = format!(
        "{}API_USER:\n  vault: app/config/api_user@kv\n  file: false\nAPI_TOKEN:\n  vault: app/config/api_token@kv\n  file: false\n",
        db_pair_yaml("app")
    );
    let native_secret = |engine: &str, mount: &str, path: &str, field: &str| {
        json!({"vault": {"server": {"url": lab.bao.addr(), "auth": {"name": "jwt", "path": "jwt",
                         "data": {"jwt": "$VAULT_ID_TOKEN", "role": "ci"}}},
                         "engine": {"name": engine, "path": mount}, "path": path, "field": field},
               "file": false, "token": "$VAULT_ID_TOKEN"})
    };
    let native = json!({
        "DB_USER": native_secret("generic", "database", "creds/app", "username"),
        "DB_PASS": native_secret("generic", "database", "creds/app", "password"),
        "API_USER": native_secret("kv-v2", "kv", "app/config", "api_user"),
        "API_TOKEN": native_secret("kv-v2", "kv", "app/config", "api_token"),
    });
    // Whether DB_USER and DB_PASS belong together; psql's own error (which names the user) is
    // discarded.
    let pair_check = |label: &str| {
        format!(
            "if {} >/dev/null 2>&1; then echo \"{label}-pair-$((1))-logs-in\"; else echo \"{label}-pair-$((0))-refused\"; fi",
            login_line(&lab, "x")
        )
    };

    let mark = lab.bao.audited_requests().len();
    let job = lab
        .job()
        .secrets_yaml(&leasehold_yaml)
        .script([pair_check("leasehold")]);
    let outcome = lab.runner().run_job(&job, RunOptions::new());
    assert!(outcome.is_success(), "{}", outcome.log);
    assert!(
        outcome.log.contains("leasehold-pair-1-logs-in"),
        "{}",
        outcome.log
    );
    let ours = lab.bao.requests_since(mark);
    wait_for("leasehold's lease revoked", REVOKE_GRACE, || {
        lab.bao
            .list_leases("database/creds/app")
            .is_empty()
            .then_some(())
    });

    let mark = lab.bao.audited_requests().len();
    let job = lab
        .job()
        .native_secrets(native)
        .script([pair_check("native")]);
    let outcome = lab.runner().run_job(&job, RunOptions::new());
    assert!(outcome.is_success(), "{}", outcome.log);
    assert!(
        outcome.log.contains("native-pair-0-refused"),
        "the per-field resolver's user and password came from one lease?\n{}",
        outcome.log
    );
    let theirs = lab.bao.requests_since(mark);
    let native_leases_left = lab.bao.list_leases("database/creds/app").len();

    let count = |requests: &[(String, String)], what: &dyn Fn(&str) -> bool| {
        requests.iter().filter(|(_, p)| what(p)).count()
    };
    let logins = |p: &str| p == "auth/jwt/login";
    let reads = |p: &str| p == "database/creds/app" || p == "kv/data/app/config";
    let revocations =
        |p: &str| p.starts_with("sys/leases/revoke/") || p == "auth/token/revoke-self";
    eprintln!(
        "Vault requests per job for DB_USER+DB_PASS (database/creds/app) and API_USER+API_TOKEN (kv app/config):\n\
         \x20 leasehold:          {} total = {} logins + {} reads + {} revocations (+ {} other); 1 database lease, revoked\n\
         \x20 per-field resolver: {} total = {} logins + {} reads + {} revocations (+ {} other); {native_leases_left} database leases, never revoked\n\
         \x20 leasehold: {ours:?}\n\x20 per-field: {theirs:?}",
        ours.len(),
        count(&ours, &logins),
        count(&ours, &reads),
        count(&ours, &revocations),
        ours.len() - count(&ours, &logins) - count(&ours, &reads) - count(&ours, &revocations),
        theirs.len(),
        count(&theirs, &logins),
        count(&theirs, &reads),
        count(&theirs, &revocations),
        theirs.len()
            - count(&theirs, &logins)
            - count(&theirs, &reads)
            - count(&theirs, &revocations),
    );
    assert_eq!(count(&ours, &logins), 1, "{ours:?}");
    assert_eq!(count(&ours, &reads), 2, "{ours:?}");
    assert_eq!(count(&theirs, &logins), 4, "{theirs:?}");
    assert_eq!(count(&theirs, &reads), 4, "{theirs:?}");
    assert_eq!(native_leases_left, 2);
}

fn random_value() -> String {
    format!("tok-{}", leasehold_test_kit::random_hex(16))
}

/// Issue 12.3: a lease that expired on its own before cleanup is reported as expired, not as
/// revoked.
#[test]
fn cleanup_reports_a_lease_that_expired_before_it_as_expired_not_revoked() {
    let lab = lab(&[("app", "5m", "1h")], "");
    let bao = &lab.bao;
    bao.enable_pki("2s");
    let yaml = "\
TLS_CERT:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci-web
    field: certificate
    data: {common_name: app.ci.example.com, ttl: 2s}
";
    let job = lab
        .job()
        .timeout(600)
        .secrets_yaml(yaml)
        .script(["sleep 4"]);
    let outcome = lab.runner().run_job(&job, RunOptions::new());
    assert!(outcome.is_success(), "{}", outcome.log);
    assert!(
        outcome
            .cleanup_output
            .contains("(pki/issue/ci-web) had already expired; nothing to revoke"),
        "{}",
        outcome.cleanup_output
    );
    assert!(
        !outcome.cleanup_output.contains("revoked lease"),
        "{}",
        outcome.cleanup_output
    );
}
