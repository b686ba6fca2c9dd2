//! Issue 11.5: job-supplied values that the host cannot carry are the job's failure, named as
//! such, never a host failure with a hint about the executor config.

use serde_json::json;

use crate::world;
use leasehold_test_kit::JobResult;
use leasehold_test_kit::world::World;

const KV_POLICY: &str = r#"path "kv/data/app/*" { capabilities = ["read"] }"#;

/// A world with `kv/app/odd`: a value with a NUL byte, one of 200 KiB, and a normal one.
fn odd_values_world() -> (World, String) {
    let world = world().policy(&[KV_POLICY]).start();
    world.bao.enable_kv("kv", 2);
    let normal = format!("ok-{}", leasehold_test_kit::random_hex(12));
    world.bao.kv_put(
        "kv",
        2,
        "app/odd",
        json!({
            "nul": "before\u{0}after",
            "big": "b".repeat(200 * 1024),
            "normal": normal,
        }),
    );
    (world, normal)
}

#[test]
fn a_nul_byte_or_an_oversized_value_in_a_variable_is_a_build_failure_naming_the_secret() {
    let (world, _) = odd_values_world();
    let cases = [
        (
            "NUL_VALUE:\n  vault: app/odd/nul@kv\n  file: false\n",
            "secret NUL_VALUE: its value contains a NUL byte, which no variable can hold; deliver it as a file instead (file: true in the declaration)",
        ),
        (
            "BIG_VALUE:\n  vault: app/odd/big@kv\n  file: false\n",
            "secret BIG_VALUE: its value is 204800 bytes, over the 131072-byte limit Linux sets on one environment variable; deliver it as a file instead",
        ),
    ];
    for (yaml, message) in cases {
        let outcome = world.run(&world.job().secrets_yaml(yaml));
        assert_eq!(
            outcome.result,
            JobResult::BuildFailure { exit_code: 1 },
            "{yaml}: {}",
            outcome.raw_log
        );
        assert!(
            outcome.raw_log.contains(message),
            "{yaml}: expected {message:?} in:\n{}",
            outcome.raw_log
        );
        assert!(
            !outcome.raw_log.contains("[executor]"),
            "{}",
            outcome.raw_log
        );
        assert!(
            !outcome.raw_log.contains("bbbbbbbb"),
            "the value is in the log"
        );
        assert!(world.leftover_states().is_empty());
    }
}

#[test]
fn the_same_values_as_files_reach_the_job() {
    let (world, normal) = odd_values_world();
    let job = world
        .job()
        .secrets_yaml(
            "NUL_FILE:\n  vault: app/odd/nul@kv\n  file: true\nBIG_FILE:\n  vault: app/odd/big@kv\n  file: true\nNORMAL:\n  vault: app/odd/normal@kv\n  file: false\n",
        )
        .script([
            "od -An -c \"$NUL_FILE\" | tr -d ' \\n'; echo",
            "wc -c < \"$BIG_FILE\"",
            "test \"${#NORMAL}\" = 27 && echo normal-ok",
        ]);
    let outcome = world.run(&job);
    assert_eq!(outcome.result, JobResult::Success, "{}", outcome.raw_log);
    let build = &outcome.stage("build_script").output;
    assert!(build.contains("before\\0after"), "{build}");
    assert!(build.contains("204800"), "{build}");
    assert!(build.contains("normal-ok"), "{build}");
    assert!(!outcome.raw_log.contains(&normal));
}

/// Issue 11.5, the attack: a job running as leasehold's own user can write the state dir, and
/// plants a symlink in place of its job's `files/` directory, pointing at a directory of the
/// victim's. The next stage that gets file secrets must refuse it and write nothing there.
#[test]
fn a_symlink_planted_in_the_jobs_state_is_refused_and_nothing_is_written_through_it() {
    let (world, normal) = odd_values_world();
    let victim = world.dir.path().join("victim");
    std::fs::create_dir(&victim).expect("victim dir");
    let state = world.state_dir();
    let job = world
        .job()
        .secrets_yaml("NORMAL:\n  vault: app/odd/normal@kv\n  file: true\n")
        .variable("STATE_ROOT", state.to_str().expect("utf-8"))
        .variable("VICTIM", victim.to_str().expect("utf-8"))
        .script([
            "for d in \"$STATE_ROOT\"/j*; do rm -rf \"$d/files\"; ln -s \"$VICTIM\" \"$d/files\"; done",
            "ls -ld \"$STATE_ROOT\"/j*/files",
        ])
        .after_script(["cat \"$NORMAL\" || true"]);
    let outcome = world.run(&job);
    let after = outcome.stage("after_script");
    assert!(
        after.output.contains("refusing to use") && after.output.contains("it is a symlink"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(
        std::fs::read_dir(&victim).expect("list victim").count(),
        0,
        "a file was written through the planted symlink"
    );
    assert!(!outcome.raw_log.contains(&normal));
    assert!(world.leftover_states().is_empty(), "{}", outcome.raw_log);
}
