//! Issue 5 acceptance: what a job prints is masked, what is not a secret passes unchanged, and
//! nobody but the job's own child can read a secret — not another user, not a process of the same
//! user, not a core dump, not `/proc/*/environ` or argv.
//!
//! Every test runs leasehold through all four stages with the gitlab-runner emulator against a
//! real OpenBao, and asserts on the *unmasked* job log (`JobOutcome::raw_log`) and on the stage
//! transcripts, which hold exactly what leasehold wrote. Secret values are never printed: a
//! failing assertion shows names, booleans, or output with every known form of every secret
//! replaced by `<LEAK:name/form>`.

use std::cell::RefCell;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::{leasehold_bin, world};
use leasehold_test_kit::issuer::bound_role;
use leasehold_test_kit::runner::Exec;
use leasehold_test_kit::sshd;
use leasehold_test_kit::world::POLICY;
use leasehold_test_kit::{JobOutcome, RunOptions, Runner, World, random_hex, scan, wait_for};

/// The KV mount and KV path every test uses.
const KV_MOUNT: &str = "kv";
const KV_PATH: &str = "ci/app";

/// The prefix gitlab-runner's bash writer puts before each echoed user command.
const COMMAND_ECHO: &str = "\x1b[32;1m$ ";

/// A world with a KV v2 mount readable by the role (bound to the default job), whose state
/// dir is left for leasehold to create (0700, owned by whoever runs it).
fn setup() -> World {
    let setup = world()
        .policy(&[format!(
            r#"path "{KV_MOUNT}/data/ci/*" {{ capabilities = ["read"] }}"#
        )])
        .role(bound_role(&[POLICY]))
        .no_dirs()
        .dir_prefix("leasehold-masking")
        .start();
    setup.bao.enable_kv(KV_MOUNT, 2);
    setup
}

/// Stores the secret fields leasehold reads at `kv/ci/app`.
fn put_secrets(setup: &World, fields: Value) {
    setup.bao.kv_put(KV_MOUNT, 2, KV_PATH, fields);
}

/// A `LEASEHOLD_SECRETS` entry for field `field` of `kv/ci/app`; `extra` is more YAML keys.
fn declare(name: &str, field: &str, file: bool, extra: &str) -> String {
    format!("{name}:\n  vault: {KV_PATH}/{field}@{KV_MOUNT}\n  file: {file}\n{extra}")
}

/// A password-like value with the characters that need URL and JSON escaping (`/+= "\`).
fn password() -> String {
    format!("s3cr/Et+{}= \"q{}\"\\z", random_hex(5), random_hex(3))
}

/// A PEM-like multi-line value (every line well over the minimum length), ending in a newline.
fn pem() -> String {
    let mut body = String::from("-----BEGIN TEST PRIVATE KEY-----\n");
    for len in [48, 48, 48, 21] {
        let mut bytes = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut bytes).expect("random");
        body.push_str(&STANDARD.encode(&bytes));
        body.push('\n');
    }
    body.push_str("-----END TEST PRIVATE KEY-----\n");
    body
}

fn percent(value: &str, upper: bool, space_plus: bool, keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if space_plus => out.push('+'),
            b'/' if keep_slash => out.push('/'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Every form of `value` that docs/masking.md promises to mask, named, computed independently of
/// leasehold (serde_json for JSON, the base64 crate, a local percent-encoder).
fn forms(value: &str) -> Vec<(String, String)> {
    let mut forms = vec![("raw".to_owned(), value.to_owned())];
    if value.contains('\n') {
        for (i, line) in value.lines().enumerate() {
            // PEM armor lines are public framing; leasehold deliberately leaves them alone.
            if line.starts_with("-----BEGIN ") || line.starts_with("-----END ") {
                continue;
            }
            let line = line.trim_end_matches('\r');
            if line.len() >= 8 {
                forms.push((format!("line {i}"), line.to_owned()));
            }
        }
    }
    let with_newline = format!("{value}\n");
    for (input, suffix) in [(value, ""), (with_newline.as_str(), " of value+\\n")] {
        for (engine, name) in [
            (&STANDARD, "base64"),
            (&STANDARD_NO_PAD, "base64 unpadded"),
            (&URL_SAFE, "base64url"),
            (&URL_SAFE_NO_PAD, "base64url unpadded"),
        ] {
            forms.push((format!("{name}{suffix}"), engine.encode(input)));
        }
    }
    forms.push(("percent".into(), percent(value, true, false, false)));
    forms.push((
        "percent lower-case".into(),
        percent(value, false, false, false),
    ));
    forms.push(("form-encoded".into(), percent(value, true, true, false)));
    forms.push(("python quote".into(), percent(value, true, false, true)));
    let json = serde_json::to_string(value).expect("json");
    let json = json[1..json.len() - 1].to_owned();
    forms.push(("json \\/".into(), json.replace('/', "\\/")));
    forms.push(("json".into(), json));
    forms
}

/// `text` with every form of every secret replaced by `<LEAK:name/form>`: safe to print.
fn redact(text: &str, secrets: &[(&str, &str)]) -> String {
    let mut all: Vec<(String, String)> = secrets
        .iter()
        .flat_map(|(name, value)| {
            forms(value)
                .into_iter()
                .map(move |(form, text)| (format!("<LEAK:{name}/{form}>"), text))
        })
        .collect();
    all.sort_by_key(|(_, text)| std::cmp::Reverse(text.len()));
    let mut out = text.to_owned();
    for (label, form) in all {
        out = out.replace(&form, &label);
    }
    out
}

/// Asserts that no form of any secret occurs in `text`, naming only the secret and the form.
fn assert_no_leak(text: &str, secrets: &[(&str, &str)], what: &str) {
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|(name, value)| {
            forms(value)
                .into_iter()
                .filter(|(_, form)| text.contains(form.as_str()))
                .map(move |(form, _)| format!("{name} ({form})"))
        })
        .collect();
    assert!(leaks.is_empty(), "{what} contains secrets: {leaks:?}");
}

/// A stage's output without the runner's `$ command` echo lines.
fn command_output(output: &str) -> String {
    output
        .split_inclusive('\n')
        .filter(|line| !line.starts_with(COMMAND_ECHO))
        .collect()
}

fn assert_success(outcome: &JobOutcome, secrets: &[(&str, &str)]) {
    assert!(
        outcome.is_success(),
        "job failed: {:?}\n{}",
        outcome.result,
        redact(&outcome.raw_log, secrets)
    );
}

// --- processes ---------------------------------------------------------------------------------

/// `(ppid, pgrp)` from `/proc/<pid>/stat`.
fn stat_of(pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(2)?.parse().ok()?))
}

fn argv_of(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Every live descendant of `pid` (not `pid` itself).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = scan::pids()
        .into_iter()
        .filter_map(|p| Some((p, stat_of(p)?.0)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// The `leasehold … run <script> <stage>` process in the stage's process group.
fn leasehold_run_pid(pgid: u32) -> Option<u32> {
    scan::group_members(pgid).into_iter().find(|&pid| {
        let argv = argv_of(pid);
        argv.first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "leasehold"))
            && argv.iter().any(|a| a == "run")
    })
}

/// Waits until the stage's leasehold has a child running a `sleep`, and returns
/// `(leasehold pid, its direct child)`.
fn wait_for_sleeping_job(pgid: u32) -> (u32, u32) {
    wait_for(
        "the job's sleep under leasehold run",
        Duration::from_secs(10),
        || {
            let leasehold = leasehold_run_pid(pgid)?;
            let below = descendants(leasehold);
            if !below.iter().any(|&p| comm_of(p) == "sleep") {
                return None;
            }
            let child = below
                .iter()
                .copied()
                .find(|&p| stat_of(p).is_some_and(|(ppid, _)| ppid == leasehold))?;
            Some((leasehold, child))
        },
    )
}

/// `(soft, hard)` "Max core file size" from `/proc/<pid>/limits`.
fn core_limit(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let fields: Vec<&str> = line["Max core file size".len()..]
        .split_whitespace()
        .collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

/// Makes sure this process's hard core-size limit is not already 0, so that a 0 in leasehold's
/// limits can only come from leasehold itself.
fn allow_core_dumps_in_test_process() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).expect("getrlimit");
    if hard == 0 {
        setrlimit(Resource::RLIMIT_CORE, soft, nix::libc::RLIM_INFINITY).expect("raise hard limit");
    }
    assert_ne!(
        core_limit("self").1,
        "0",
        "precondition: test's hard core limit"
    );
}

/// The uid and gid of local user `name`, created when missing ([`sshd::ensure_user`]).
fn ensure_user(name: &str) -> (u32, u32) {
    let user = sshd::ensure_user(name, &[]);
    (user.uid, user.gid)
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

// --- tests -------------------------------------------------------------------------------------

/// Every way the issue lists of printing a secret ends up as `[MASKED]`, and nothing else of the
/// output changes: the build_script output (without the runner's command echoes) is exactly the
/// expected text, and no form of either secret is anywhere in the raw job log.
#[test]
fn every_printed_form_of_a_secret_is_masked() {
    let setup = setup();
    let pw = password();
    let key = pem();
    put_secrets(&setup, json!({"password": pw, "tls_key": key}));
    let secrets = [("DB_PASSWORD", pw.as_str()), ("TLS_KEY", key.as_str())];

    let py = |code: &str| format!("python3 -c '{code}'");
    let uri = "if command -v jq >/dev/null; then printf 'uri:%s\\n' \"$(jq -rn --arg x \"$DB_PASSWORD\" '$x|@uri')\"; \
               else printf 'uri:%s\\n' \"$(python3 -c 'import os,urllib.parse as u;print(u.quote(os.environ[\"DB_PASSWORD\"],safe=\"\"))')\"; fi";
    let script = [
        "echo \"$DB_PASSWORD\"".to_owned(),
        "echo \"before-${DB_PASSWORD}-after\"".to_owned(),
        "printf %s \"${DB_PASSWORD:0:5}\"; sleep 0.3; printf '%s\\n' \"${DB_PASSWORD:5}\""
            .to_owned(),
        "printf 'b64:'; printf %s \"$DB_PASSWORD\" | base64 -w0; echo".to_owned(),
        "printf 'b64n:'; echo \"$DB_PASSWORD\" | base64 -w0; echo".to_owned(),
        "printf 'b64url:'; printf %s \"$DB_PASSWORD\" | base64 -w0 | tr '+/' '-_' | tr -d =; echo"
            .to_owned(),
        uri.to_owned(),
        py("import os,urllib.parse as u;print(\"quote:\"+u.quote(os.environ[\"DB_PASSWORD\"]))"),
        py(
            "import os,urllib.parse as u;print(\"quote_plus:\"+u.quote_plus(os.environ[\"DB_PASSWORD\"]))",
        ),
        py("import json,os;print(json.dumps({\"k\":os.environ[\"DB_PASSWORD\"]}))"),
        "jq -cn --arg x \"$DB_PASSWORD\" '{k:$x}'".to_owned(),
        // The PEM, line by line: the lines together are the whole value, masked as one.
        "while read -r l; do echo \"$l\"; done < \"$TLS_KEY\"; echo".to_owned(),
        // Each line on its own, inside other text.
        "while read -r l; do echo \"line:$l\"; done < \"$TLS_KEY\"".to_owned(),
        "cat \"$TLS_KEY\"; echo".to_owned(),
        py("import json,os;print(json.dumps({\"pem\":open(os.environ[\"TLS_KEY\"]).read()}))"),
        "jq -cRs '{pem:.}' < \"$TLS_KEY\"".to_owned(),
        "printf 'pemb64:'; base64 -w0 < \"$TLS_KEY\"; echo".to_owned(),
    ];
    let job = setup
        .job()
        .secrets_yaml(&format!(
            "{}{}",
            declare("DB_PASSWORD", "password", false, ""),
            declare("TLS_KEY", "tls_key", true, "")
        ))
        .script(script);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert_success(&outcome, &secrets);

    let build = command_output(&outcome.stage("build_script").output);
    let expected = "[MASKED]\n\
                    before-[MASKED]-after\n\
                    [MASKED]\n\
                    b64:[MASKED]\n\
                    b64n:[MASKED]\n\
                    b64url:[MASKED]\n\
                    uri:[MASKED]\n\
                    quote:[MASKED]\n\
                    quote_plus:[MASKED]\n\
                    {\"k\": \"[MASKED]\"}\n\
                    {\"k\":\"[MASKED]\"}\n\
                    [MASKED]\n\
                    line:-----BEGIN TEST PRIVATE KEY-----\nline:[MASKED]\nline:[MASKED]\nline:[MASKED]\nline:[MASKED]\nline:-----END TEST PRIVATE KEY-----\n\
                    [MASKED]\n\
                    {\"pem\": \"[MASKED]\"}\n\
                    {\"pem\":\"[MASKED]\"}\n\
                    pemb64:[MASKED]\n";
    assert!(
        build == expected,
        "build_script output differs:\n--- got (redacted)\n{}\n--- expected\n{expected}",
        redact(&build, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
    assert_no_leak(&outcome.cleanup_output, &secrets, "cleanup output");
    assert!(outcome.raw_log.contains("[MASKED]"));
}

/// With masking active, stdout and stderr lines keep their relative order (one pipe), and
/// output that is not a secret — control bytes, `\r`, tabs, NUL, unicode, a 300 kB line, a
/// possible secret prefix, no trailing newline — comes out byte for byte.
#[test]
fn order_and_non_secret_bytes_survive_masking() {
    let setup = setup();
    let token = password();
    put_secrets(&setup, json!({"token": token}));
    let secrets = [("TOKEN", token.as_str())];

    let mut block = String::from("tab\there\r\ncarriage\rreturn\nnul:\0:end\n");
    block.push_str("unicode: héllo wörld ✓ 日本語 🎉\n\x1b[31mansi red\x1b[0m\n");
    block.push_str("looks like base64: czNjci9FdCs= and url %2F%2B%3D and json \\\"\\\\\n");
    block.push_str(&format!("prefix only: {}…\n", &token[..6]));
    let long: String = "lorem ipsum dolor sit amet, "
        .chars()
        .cycle()
        .take(300_000)
        .collect();
    block.push_str(&long);
    block.push('\n');
    // Ends with the first bytes of the secret and no newline: held back, then released.
    block.push_str("the end, almost: ");
    block.push_str(&token[..7]);
    let block_file = setup.path("block.txt");
    std::fs::write(&block_file, &block).expect("write block");

    let order: String = (1..=50).map(|i| format!("o{i}\ne{i}\n")).collect();
    let job = setup
        .job()
        .secrets_yaml(&declare("TOKEN", "token", false, ""))
        .variable("BLOCK_FILE", &block_file.display().to_string())
        .script([
            "for i in $(seq 1 50); do echo \"o$i\"; echo \"e$i\" >&2; done",
            "m=PLAIN; printf '%s_START>' \"$m\"; cat \"$BLOCK_FILE\"; printf '<%s_END\\n' \"$m\"",
            "echo \"tail:$TOKEN\"",
        ]);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert_success(&outcome, &secrets);

    let output = &outcome.stage("build_script").output;
    assert!(
        output.contains(&order),
        "stdout/stderr order lost:\n{}",
        redact(output, &secrets)
    );
    assert!(
        outcome.raw_log.contains(&order),
        "order lost in the job log"
    );

    let start = output.find("PLAIN_START>").expect("start marker") + "PLAIN_START>".len();
    let end = start + output[start..].find("<PLAIN_END").expect("end marker");
    let got = &output[start..end];
    if got != block {
        let at = got
            .bytes()
            .zip(block.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(block.len()));
        panic!(
            "non-secret output changed: {} bytes instead of {}, first difference at byte {at}",
            got.len(),
            block.len()
        );
    }
    assert!(output.contains("tail:[MASKED]\n"), "the secret after it");
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}

/// With `[executor] user`, the job runs as that user: `id` shows it, it reads its own file
/// secret, and it can neither list nor read leasehold's state nor read leasehold's environment.
#[test]
fn a_job_user_cannot_read_leaseholds_state() {
    let user = "lh-mask-job";
    let (uid, gid) = ensure_user(user);
    let setup = setup();
    // The job user must traverse the temp dir, and get_sources (run as the user) creates the
    // project dir in builds_dir.
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    setup.hand_build_dirs_to(uid, gid);
    setup.write_config(&format!(
        "[executor]\nuser = \"{user}\"\nfiles_dir = \"{}\"\n",
        setup.path("files").display()
    ));
    let cert = format!("cert-{}/+=\"\n", random_hex(12));
    put_secrets(&setup, json!({"cert": cert}));
    let secrets = [("CERT", cert.as_str())];

    // The job learns the path of its own state dir from the test (it could not list it).
    let handoff = setup.path("handoff");
    let state_root = setup.state_dir();
    let job_state = Rc::new(RefCell::new(None::<(bool, bool)>));
    let seen = job_state.clone();
    let (handoff_w, root_w) = (handoff.clone(), state_root.clone());
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(100),
        move |_pgid| {
            let dirs: Vec<PathBuf> = std::fs::read_dir(&root_w)
                .expect("state root")
                .flatten()
                .map(|e| e.path())
                .collect();
            assert_eq!(dirs.len(), 1, "one job state dir");
            let dir = &dirs[0];
            *seen.borrow_mut() = Some((
                dir.join("journal.json").is_file(),
                dir.join("secrets.enc").is_file(),
            ));
            let tmp = handoff_w.with_extension("tmp");
            std::fs::write(&tmp, dir.display().to_string()).expect("handoff");
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            std::fs::rename(&tmp, &handoff_w).expect("rename");
        },
    );
    let root = state_root.display();
    let check = |what: &str, cmd: &str| {
        format!(
            "if {cmd} >/dev/null 2>&1; then echo '{what}=allowed'; else echo '{what}=denied'; fi"
        )
    };
    let job = setup
        .job()
        .secrets_yaml(&declare("CERT", "cert", true, ""))
        .script([
            "echo \"id=$(id -u):$(id -un)\"".to_owned(),
            format!(
                "for i in $(seq 1 200); do [ -s '{}' ] && break; sleep 0.05; done; p=\"$(cat '{}')\"",
                handoff.display(),
                handoff.display()
            ),
            check("state-root-ls", &format!("ls '{root}'")),
            check("state-ls", "ls \"$p\""),
            check("journal-read", "cat \"$p/journal.json\""),
            check("secrets-read", "cat \"$p/secrets.enc\""),
            check("leasehold-environ-read", "cat /proc/$PPID/environ"),
            "echo \"cert-owner=$(stat -c %U \"$CERT\") cert-sha256=$(sha256sum < \"$CERT\" | cut -d' ' -f1)\""
                .to_owned(),
        ]);
    let outcome = setup.runner().run_job(&job, opts);
    assert_success(&outcome, &secrets);

    assert_eq!(
        *job_state.borrow(),
        Some((true, true)),
        "the state the job tried to read existed (journal, secrets)"
    );
    let output = command_output(&outcome.stage("build_script").output);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_bytes());
    let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let expected = format!(
        "id={uid}:{user}\n\
         state-root-ls=denied\n\
         state-ls=denied\n\
         journal-read=denied\n\
         secrets-read=denied\n\
         leasehold-environ-read=denied\n\
         cert-owner={user} cert-sha256={sha}\n"
    );
    assert!(
        output == expected,
        "job user's view differs:\n--- got (redacted)\n{}\n--- expected\n{expected}",
        redact(&output, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}

/// leasehold cannot dump core and is not dumpable. To tell "not dumpable" apart from "owned by
/// root", leasehold itself runs as an unprivileged user here (every stage through `setpriv`):
/// its `/proc/<pid>/environ` is nevertheless owned by root, unlike that of its child of the same
/// user, and the job — same uid as leasehold — cannot read leasehold's environment, where the
/// state key lives.
#[test]
fn leasehold_is_not_dumpable_and_dumps_no_core() {
    allow_core_dumps_in_test_process();
    let user = "lh-mask-svc";
    let (uid, gid) = ensure_user(user);
    let setup = setup();
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    chown(setup.dir.path(), uid, gid);
    let token = password();
    put_secrets(&setup, json!({"token": token}));
    let secrets = [("TOKEN", token.as_str())];

    // The runner emulator's temp dirs are root's: hand them to the user before each stage.
    let wrapper = setup.path("as-user.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nset -e\nchown -R {uid}:{gid} \"$TMPDIR\"\nexec setpriv --reuid={uid} --regid={gid} --clear-groups -- '{}' --config '{}' \"$@\"\n",
            leasehold_bin().display(),
            setup.config_path().display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exec = |stage: &str| Some(Exec::new(&wrapper, [stage]));
    let runner = Runner::empty()
        .config_exec(exec("config"))
        .prepare_exec(exec("prepare"))
        .run_exec(exec("run"))
        .cleanup_exec(exec("cleanup"));

    #[derive(Debug, PartialEq)]
    struct Seen {
        uid: String,
        core: (String, String),
        environ_owner: u32,
        child_environ_owner: u32,
    }
    let seen = Rc::new(RefCell::new(None::<Seen>));
    let out = seen.clone();
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(300),
        move |pgid| {
            let (leasehold, child) = wait_for_sleeping_job(pgid);
            let status =
                std::fs::read_to_string(format!("/proc/{leasehold}/status")).expect("status");
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_owned();
            let owner = |pid: u32| {
                std::fs::metadata(format!("/proc/{pid}/environ"))
                    .expect("environ")
                    .uid()
            };
            *out.borrow_mut() = Some(Seen {
                uid,
                core: core_limit(&leasehold.to_string()),
                environ_owner: owner(leasehold),
                child_environ_owner: owner(child),
            });
        },
    );
    let check = |what: &str, cmd: &str| {
        format!(
            "if {cmd} >/dev/null 2>&1; then echo '{what}=allowed'; else echo '{what}=denied'; fi"
        )
    };
    let job = setup
        .job()
        .secrets_yaml(&declare("TOKEN", "token", false, ""))
        .script([
            "echo \"id=$(id -u)\"".to_owned(),
            check(
                "parent-is-leasehold-run",
                "grep -qa leasehold /proc/$PPID/cmdline",
            ),
            check("leasehold-environ-read", "cat /proc/$PPID/environ"),
            check("own-environ-read", "cat /proc/$$/environ"),
            "sleep 2".to_owned(),
        ]);
    let outcome = runner.run_job(&job, opts);
    assert_success(&outcome, &secrets);

    let seen = seen.borrow_mut().take().expect("the stage was sampled");
    assert_eq!(seen.uid, uid.to_string(), "leasehold ran as {user}");
    assert_eq!(
        seen.core,
        ("0".to_owned(), "0".to_owned()),
        "leasehold's core size limit (soft, hard)"
    );
    assert_eq!(
        seen.environ_owner, 0,
        "a non-dumpable process's /proc files belong to root"
    );
    assert_eq!(
        seen.child_environ_owner, uid,
        "control: the job's dumpable shell of the same user owns its /proc files"
    );
    let output = command_output(&outcome.stage("build_script").output);
    let expected = format!(
        "id={uid}\n\
         parent-is-leasehold-run=allowed\n\
         leasehold-environ-read=denied\n\
         own-environ-read=allowed\n"
    );
    assert!(
        output == expected,
        "job's view differs:\n--- got (redacted)\n{}\n--- expected\n{expected}",
        redact(&output, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}

/// While the job runs, its secrets are in the environment of the job's own process tree only:
/// not in leasehold's, not in any other process's, not in any command line. A file secret is in
/// no environment at all. (Also: leasehold running as root has core dumps off.)
#[test]
fn secrets_are_only_in_the_environment_of_the_jobs_processes() {
    allow_core_dumps_in_test_process();
    let setup = setup();
    let token = password();
    let cert = format!("file-secret-{}", random_hex(12));
    put_secrets(&setup, json!({"token": token, "cert": cert}));
    let secrets = [("TOKEN", token.as_str()), ("CERT", cert.as_str())];

    #[derive(Debug, Default)]
    struct Seen {
        child_has_token: bool,
        token_elsewhere: Vec<(u32, String)>,
        token_in_argv: Vec<(u32, String)>,
        cert_in_environ: Vec<(u32, String)>,
        cert_in_argv: Vec<(u32, String)>,
        leasehold_excluded: bool,
        leasehold_core: (String, String),
    }
    let seen = Rc::new(RefCell::new(None::<Seen>));
    let out = seen.clone();
    let (token_w, cert_w) = (token.clone(), cert.clone());
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(300),
        move |pgid| {
            let (leasehold, child) = wait_for_sleeping_job(pgid);
            let job_tree = descendants(leasehold);
            let named = |hits: Vec<scan::ProcMatch>| -> Vec<(u32, String)> {
                hits.into_iter().map(|m| (m.pid, comm_of(m.pid))).collect()
            };
            *out.borrow_mut() = Some(Seen {
                child_has_token: scan::environs_containing(&token_w, &[])
                    .iter()
                    .any(|m| m.pid == child),
                token_elsewhere: named(scan::environs_containing(&token_w, &job_tree)),
                token_in_argv: named(scan::cmdlines_containing(&token_w)),
                cert_in_environ: named(scan::environs_containing(&cert_w, &[])),
                cert_in_argv: named(scan::cmdlines_containing(&cert_w)),
                leasehold_excluded: !job_tree.contains(&leasehold),
                leasehold_core: core_limit(&leasehold.to_string()),
            });
        },
    );
    let job = setup
        .job()
        .secrets_yaml(&format!(
            "{}{}",
            declare("TOKEN", "token", false, ""),
            declare("CERT", "cert", true, "")
        ))
        .script(["echo started", "sleep 3"]);
    let outcome = setup.runner().run_job(&job, opts);
    assert_success(&outcome, &secrets);

    let seen = seen.borrow_mut().take().expect("the stage was sampled");
    assert!(
        seen.child_has_token,
        "control: the job's shell has TOKEN in its environment"
    );
    assert!(seen.leasehold_excluded);
    assert_eq!(
        seen.leasehold_core,
        ("0".to_owned(), "0".to_owned()),
        "leasehold's core size limit (soft, hard), running as root"
    );
    assert!(
        seen.token_elsewhere.is_empty(),
        "TOKEN in the environment of processes outside the job: {:?}",
        seen.token_elsewhere
    );
    assert!(
        seen.token_in_argv.is_empty(),
        "TOKEN in argv: {:?}",
        seen.token_in_argv
    );
    assert!(
        seen.cert_in_environ.is_empty(),
        "file secret CERT in an environment: {:?}",
        seen.cert_in_environ
    );
    assert!(
        seen.cert_in_argv.is_empty(),
        "CERT in argv: {:?}",
        seen.cert_in_argv
    );
}

/// A value shorter than `[mask] min_length` is not masked, and the job log says so exactly once,
/// by name and without the value; longer secrets of the same job are still masked.
#[test]
fn short_values_are_not_masked_and_named_once() {
    let setup = setup();
    setup.write_config("[mask]\nmin_length = 10\n");
    let pin = format!("P{}", &random_hex(4)[..7]); // 8 bytes: under 10
    let long = format!("long-enough-{}", random_hex(6));
    put_secrets(&setup, json!({"pin": pin, "long": long}));
    let job = setup
        .job()
        .secrets_yaml(&format!(
            "{}{}",
            declare("SHORT_PIN", "pin", false, ""),
            declare("LONG_TOKEN", "long", false, "")
        ))
        .script(["echo \"pin=$SHORT_PIN\"", "echo \"long=$LONG_TOKEN\""])
        .after_script(["echo \"after-pin=$SHORT_PIN\""]);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert_success(&outcome, &[("LONG_TOKEN", long.as_str())]);

    let build = command_output(&outcome.stage("build_script").output);
    assert!(
        build.starts_with("pin=") && build.contains(&format!("pin={pin}\n")),
        "the short value is printed as is"
    );
    assert!(build.contains("long=[MASKED]\n"), "the long one is masked");
    let warnings: Vec<&str> = outcome
        .raw_log
        .lines()
        .filter(|l| l.contains("SHORT_PIN") && l.contains("not be masked"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning naming SHORT_PIN");
    assert!(
        warnings[0].contains("shorter than 10 bytes"),
        "the warning gives the minimum"
    );
    assert!(
        !warnings[0].contains(&pin),
        "the warning must not contain the value"
    );
    assert!(
        !outcome
            .raw_log
            .lines()
            .any(|l| l.contains("LONG_TOKEN") && l.contains("not be masked")),
        "no warning for the long secret"
    );
    assert_no_leak(
        &outcome.raw_log,
        &[("LONG_TOKEN", long.as_str())],
        "the raw job log",
    );
}

/// A secret's own `stages:` overrides `secret_stages`: `[after_script]` keeps it out of
/// build_script's environment and puts it into after_script's.
#[test]
fn per_secret_stages_override_the_default() {
    let setup = setup();
    let early = password();
    let late = format!("late-{}", random_hex(10));
    put_secrets(&setup, json!({"early": early, "late": late}));
    let secrets = [("EARLY", early.as_str()), ("LATE", late.as_str())];
    let probe = |stage: &str| {
        format!(
            "for v in EARLY LATE; do if printenv \"$v\" >/dev/null; then echo \"{stage}:$v=present\"; else echo \"{stage}:$v=absent\"; fi; done"
        )
    };
    let job = setup
        .job()
        .secrets_yaml(&format!(
            "{}{}",
            declare("EARLY", "early", false, ""),
            declare("LATE", "late", false, "  stages: [after_script]\n")
        ))
        .script([probe("build")])
        .after_script([probe("after"), "echo \"late=$LATE\"".to_owned()]);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert_success(&outcome, &secrets);

    let build = command_output(&outcome.stage("build_script").output);
    assert_eq!(build, "build:EARLY=present\nbuild:LATE=absent\n");
    let after = command_output(&outcome.stage("after_script").output);
    assert!(
        after == "after:EARLY=present\nafter:LATE=present\nlate=[MASKED]\n",
        "after_script: {}",
        redact(&after, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}

/// Masking covers every sub-stage of a job with secrets, not only those that receive them: a
/// value build_script wrote to a file is masked when a later step and after_script print it,
/// although neither has the secret in its environment.
#[test]
fn every_sub_stage_of_a_job_with_secrets_is_masked() {
    let setup = setup();
    let token = password();
    put_secrets(&setup, json!({"token": token}));
    let secrets = [("TOKEN", token.as_str())];
    let has_token = "if printenv TOKEN >/dev/null; then echo has-token; else echo no-token; fi";
    let job = setup
        .job()
        .secrets_yaml(&declare(
            "TOKEN",
            "token",
            false,
            "  stages: [build_script]\n",
        ))
        .script(["printf '%s\\n' \"$TOKEN\" > leak.txt", "echo written"])
        .step("x", [has_token, "echo \"step:$(cat leak.txt)\""])
        .after_script([has_token, "echo \"after:$(cat leak.txt)\"", "cat leak.txt"]);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert_success(&outcome, &secrets);

    let step = command_output(&outcome.stage("step_x").output);
    assert!(
        step == "no-token\nstep:[MASKED]\n",
        "step_x: {}",
        redact(&step, &secrets)
    );
    let after = command_output(&outcome.stage("after_script").output);
    assert!(
        after == "no-token\nafter:[MASKED]\n[MASKED]\n",
        "after_script: {}",
        redact(&after, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}

/// Issue 11.3: large and periodic values cost the masker time and memory linear in their size.
/// A 1 MiB CA-bundle-like file secret (16 000 lines, each a form of its own) and a 128 KiB env
/// secret that repeats 7 bytes (its anchor recurs every 7 bytes) made every stage build a
/// gigabyte-sized automaton for seconds to minutes (prepare ran past its timeout). Through the
/// real binary, every stage now finishes in a few seconds even unoptimised, and whole printed
/// forms are masked: the bundle by `cat`, one line of it by `sed`, its base64, and the periodic
/// value alone, inside other text, and twice in a row.
#[test]
fn large_and_periodic_secrets_are_masked_quickly() {
    let setup = setup();
    let mut bundle = String::with_capacity((1 << 20) + 2048);
    while bundle.len() < 1 << 20 {
        bundle.push_str("-----BEGIN CERTIFICATE-----\n");
        let mut der = vec![0u8; 900];
        aws_lc_rs::rand::fill(&mut der).expect("random");
        let b64 = STANDARD.encode(&der);
        for line in b64.as_bytes().chunks(64) {
            bundle.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
            bundle.push('\n');
        }
        bundle.push_str("-----END CERTIFICATE-----\n");
    }
    // The largest value an environment variable can carry (execve's 128 KiB per string,
    // including `PERIODIC=` and the NUL).
    let periodic: String = format!("s3{}t-", random_hex(1))
        .chars()
        .cycle()
        .take((128 << 10) - 64)
        .collect();
    put_secrets(&setup, json!({"bundle": bundle, "periodic": periodic}));
    let secrets = [("BUNDLE", bundle.as_str()), ("PERIODIC", periodic.as_str())];

    let job = setup
        .job()
        .secrets_yaml(&format!(
            "{}{}",
            declare("BUNDLE", "bundle", true, ""),
            declare("PERIODIC", "periodic", false, "")
        ))
        .script([
            "cat \"$BUNDLE\"; echo",
            "sed -n 2p \"$BUNDLE\"",
            "base64 -w0 < \"$BUNDLE\"; echo",
            "printf '%s\\n' \"$PERIODIC\"",
            "echo \"x${PERIODIC}y\"",
            "echo \"${PERIODIC}${PERIODIC}\"",
        ]);
    let outcome = setup.runner().run_job(&job, RunOptions::new());
    assert!(
        outcome.is_success(),
        "job failed: {:?} (log {} bytes)",
        outcome.result,
        outcome.raw_log.len()
    );
    for stage in &outcome.stages {
        assert!(
            stage.duration < Duration::from_secs(20),
            "stage {} took {:?}",
            stage.name,
            stage.duration
        );
    }

    // A leak of either value would make the log at least 128 KiB long; checking that first
    // keeps the form-by-form search below cheap.
    assert!(
        outcome.raw_log.len() < 64 << 10,
        "the raw job log is {} bytes long",
        outcome.raw_log.len()
    );
    let build = command_output(&outcome.stage("build_script").output);
    let expected = "[MASKED]\n[MASKED]\n[MASKED]\n[MASKED]\nx[MASKED]y\n[MASKED][MASKED]\n";
    assert!(
        build == expected,
        "build_script output differs:\n--- got (redacted)\n{}\n--- expected\n{expected}",
        redact(&build, &secrets)
    );
    assert_no_leak(&outcome.raw_log, &secrets, "the raw job log");
}
