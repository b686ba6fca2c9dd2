//! One sub-stage as a `docker exec`, with nothing secret outside the container's memory.
//!
//! The exec's command line is a fixed bootstrap (`sh -c <BOOTSTRAP> leasehold <dir>`) and its
//! environment is empty: both are visible to anyone with access to the engine (`docker exec
//! inspect`, `ps` on the host), and the engine writes an exec's process spec, environment
//! included, to a temp file on the host while starting it. The stage file travels over the
//! exec's stdin instead: this stage's secrets as `export` lines and 0600 files, then the
//! runner's script unchanged. The bootstrap stores it in a fresh 0700 directory on the
//! container's tmpfs ([`super::container::STAGE_ROOT`]), owned by the user the stage runs as,
//! runs it with bash, and deletes the directory when bash exits; leasehold deletes it too if
//! the stage was killed.
//!
//! Why a directory per stage: the file secrets of `build_script` must not be there for
//! `after_script` unless it gets them too. Why the bootstrap records its pid: the exec is its
//! own session and process group inside the container, so one `kill -TERM -- -<pid>` from a
//! second exec reaches every process the stage started, as gitlab-runner's group signal does
//! for the shell executor.

use std::fmt::Write as _;
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::Stream;
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;

use crate::exit::FailureKind;
use crate::state::StoredSecret;

use super::container::STAGE_ROOT;
use super::{DockerError, Engine};

/// Stores the stage file on the tmpfs and runs it; see the module docs. `$1` is the stage
/// directory's name.
const BOOTSTRAP: &str = r#"d="/run/leasehold/$1"
umask 077
mkdir "$d" || exit 1
echo "$$" > "$d/pid"
if ! cat > "$d/stage"; then rm -rf "$d"; exit 1; fi
if ! command -v bash >/dev/null 2>&1; then
  echo "leasehold: the image has no bash, which the runner's stage scripts need" >&2
  rm -rf "$d"
  exit 1
fi
umask 022
trap : TERM INT HUP
bash "$d/stage"
rc=$?
rm -rf "$d"
exit $rc"#;

/// Signals the process group the bootstrap leads: `$1` the stage directory, `$2` the signal.
const SIGNAL: &str = r#"p=$(cat "$1/pid" 2>/dev/null) && [ -n "$p" ] && kill -"$2" -- "-$p""#;

/// A stage's directory in its container.
#[derive(Debug, Clone)]
pub(crate) struct StageDir {
    name: String,
}

impl StageDir {
    /// A fresh, unguessable directory name for `stage`.
    pub(crate) fn new(stage: &str) -> Self {
        StageDir {
            name: crate::random::unguessable_name(stage),
        }
    }

    /// The directory's path in the container.
    pub(crate) fn path(&self) -> String {
        format!("{STAGE_ROOT}/{}", self.name)
    }
}

/// The stage file: `secrets` as exports and 0600 files in `dir`, then `script` unchanged.
pub(crate) fn stage_file(
    dir: &StageDir,
    secrets: &[&StoredSecret],
    script: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, DockerError> {
    let mut text = zeroize::Zeroizing::new(String::new());
    let dir = dir.path();
    if !secrets.is_empty() {
        let _ = writeln!(
            text,
            "# leasehold: this stage's secrets (a 0600 file on the container's tmpfs, deleted when the stage ends)"
        );
    }
    for secret in secrets {
        if !is_variable_name(&secret.name) {
            return Err(DockerError::Invalid {
                what: "a secret's variable name",
                detail: format!("{:?} is not a shell variable name", secret.name),
            });
        }
        let value = crate::shell_quote::ansi_c_quote(secret.value.expose_secret().as_bytes());
        if secret.file {
            let path = format!("{dir}/{}", secret.name);
            let _ = writeln!(
                text,
                "(umask 077 && printf '%s' {value} > '{path}') || exit 1\nexport {}='{path}'",
                secret.name
            );
        } else {
            let _ = writeln!(text, "export {}={value}", secret.name);
        }
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(text.len() + script.len() + 1));
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(script);
    if !script.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The output of a running stage.
pub(crate) type Output =
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A stage that was started: its exec and its output.
pub(crate) struct Running {
    /// The exec id.
    pub exec_id: String,
    /// stdout and stderr frames, in order.
    pub output: Output,
}

/// Where and as whom a stage runs.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    /// The container name.
    pub container: &'a str,
    /// The user (`None`: the image's).
    pub user: Option<&'a str>,
    /// The stage directory.
    pub dir: &'a StageDir,
}

impl Target<'_> {
    fn exec(&self, cmd: Vec<String>, attach_stdin: bool) -> CreateExecOptions<String> {
        CreateExecOptions {
            attach_stdin: Some(attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(Vec::new()),
            cmd: Some(cmd),
            user: self.user.map(str::to_owned),
            ..Default::default()
        }
    }
}

/// Starts the stage in `target` and writes `payload` (the stage file) to its stdin.
pub(crate) async fn start(
    engine: &Engine,
    target: &Target<'_>,
    payload: &[u8],
) -> Result<Running, DockerError> {
    let container = target.container;
    let cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        BOOTSTRAP.to_owned(),
        "leasehold".to_owned(),
        target.dir.name.clone(),
    ];
    let created = engine
        .client()
        .create_exec(container, target.exec(cmd, true))
        .await
        .map_err(|e| {
            if super::engine::is_not_found(&e) {
                DockerError::Gone {
                    name: container.to_owned(),
                }
            } else {
                engine.error(format!("exec in {container}"), FailureKind::System)(e)
            }
        })?;
    let started = engine
        .client()
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(64 * 1024),
            }),
        )
        .await
        .map_err(engine.error(
            format!("start the stage in {container}"),
            FailureKind::System,
        ))?;
    let StartExecResults::Attached { output, mut input } = started else {
        return Err(DockerError::Api {
            host: engine.host().to_owned(),
            action: format!("attach to the stage in {container}"),
            detail: "the engine started it detached".into(),
            kind: FailureKind::System,
        });
    };
    let written = async {
        input.write_all(payload).await?;
        input.flush().await?;
        input.shutdown().await
    }
    .await;
    if let Err(e) = written {
        return Err(DockerError::Unreachable {
            host: engine.host().to_owned(),
            detail: format!("sending the stage script to {container}: {e}"),
        });
    }
    Ok(Running {
        exec_id: created.id,
        output,
    })
}

/// The stage's exit code, once the engine has it.
pub(crate) async fn exit_code(engine: &Engine, exec_id: &str) -> Result<i32, DockerError> {
    for _ in 0..100 {
        let inspected = engine
            .client()
            .inspect_exec(exec_id)
            .await
            .map_err(engine.error("inspect the stage's exec", FailureKind::System))?;
        if inspected.running != Some(true) {
            let code = inspected.exit_code.unwrap_or(-1);
            return Ok(i32::try_from(code).unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(DockerError::Api {
        host: engine.host().to_owned(),
        action: "report the stage's exit code".into(),
        detail: "the exec still runs after its output ended".into(),
        kind: FailureKind::System,
    })
}

/// Sends `signal` (`TERM`, `KILL`) to every process of the stage, from a second exec as the
/// same user.
pub(crate) async fn signal(
    engine: &Engine,
    target: &Target<'_>,
    signal: &str,
) -> Result<(), DockerError> {
    let cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        SIGNAL.to_owned(),
        "leasehold".to_owned(),
        target.dir.path(),
        signal.to_owned(),
    ];
    run_quietly(engine, target, cmd).await
}

/// Removes the stage directory, for a stage whose bootstrap could not (killed, or the stage
/// file never arrived).
pub(crate) async fn remove_dir(engine: &Engine, target: &Target<'_>) -> Result<(), DockerError> {
    let cmd = vec![
        "rm".to_owned(),
        "-rf".to_owned(),
        "--".to_owned(),
        target.dir.path(),
    ];
    run_quietly(engine, target, cmd).await
}

async fn run_quietly(
    engine: &Engine,
    target: &Target<'_>,
    cmd: Vec<String>,
) -> Result<(), DockerError> {
    use futures_util::StreamExt;
    let mut options = target.exec(cmd, false);
    options.attach_stdout = Some(true);
    let created = engine
        .client()
        .create_exec(target.container, options)
        .await
        .map_err(engine.error(format!("exec in {}", target.container), FailureKind::System))?;
    if let StartExecResults::Attached { mut output, .. } = engine
        .client()
        .start_exec(&created.id, None)
        .await
        .map_err(engine.error(format!("exec in {}", target.container), FailureKind::System))?
    {
        while output.next().await.is_some() {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn secret(name: &str, value: &str, file: bool) -> StoredSecret {
        StoredSecret {
            name: name.into(),
            value: SecretString::from(value),
            file,
            stages: vec![],
            origin: String::new(),
            plain: false,
        }
    }

    #[test]
    fn the_stage_file_exports_writes_then_runs_the_script_unchanged() {
        let dir = tempfile::tempdir().expect("tmp");
        let stage_dir = StageDir { name: "x".into() };
        let secrets = [
            secret("A", "it's \"q\"\n$x\\y", false),
            secret("F", "file\nline2", true),
        ];
        let refs: Vec<&StoredSecret> = secrets.iter().collect();
        let file =
            stage_file(&stage_dir, &refs, b"echo \"A=$A\"; cat \"$F\"; exit 3").expect("file");
        // Run it with the container path mapped to a temp dir.
        let text = String::from_utf8(file.to_vec())
            .expect("utf8")
            .replace("/run/leasehold/x", &dir.path().display().to_string());
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&text)
            .output()
            .expect("bash");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "A=it's \"q\"\n$x\\y\nfile\nline2"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("F"))
            .expect("F")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let bad = [secret("A;B", "v", false)];
        let refs: Vec<&StoredSecret> = bad.iter().collect();
        assert!(stage_file(&stage_dir, &refs, b"").is_err());
    }

    #[test]
    fn no_secret_no_preamble_and_fresh_dirs() {
        let dir = StageDir::new("step_a-b");
        assert!(dir.path().starts_with("/run/leasehold/step_a_b-"));
        assert_ne!(dir.path(), StageDir::new("step_a-b").path());
        let file = stage_file(&dir, &[], b"exit 0\n").expect("file");
        assert_eq!(&file[..], b"exit 0\n");
    }
}
