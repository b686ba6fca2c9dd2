//! A throw-away PostgreSQL cluster per test.
//!
//! `initdb` refuses to run as root, so the cluster lives in a temp dir owned by the `postgres` OS
//! user and both `initdb` and `postgres` run as that user (the server is our direct child, so it
//! is stopped by its own PID). It listens on `127.0.0.1:<free port>` only, with its socket in a
//! private dir, and the superuser `postgres` has a random password so that OpenBao's database
//! plugin can connect over TCP. Durability is off (`fsync=off`): the data dies with the test.
//!
//! ```ignore
//! let pg = Postgres::start();
//! assert_eq!(pg.psql("select 1"), "1");
//! assert!(pg.role_exists("postgres"));
//! ```

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown};

use super::proc::{spawn_tied_to_thread, stop_child};
use super::{free_port, random_hex, tail_of_file};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server, stopped by PID (fast shutdown) on drop; its dir is removed.
pub struct Postgres {
    child: Child,
    bin: PathBuf,
    port: u16,
    password: String,
    socket_dir: PathBuf,
    log: PathBuf,
    // Last, so the files outlive the process.
    _dir: tempfile::TempDir,
}

/// PostgreSQL's `bin` dir: `LEASEHOLD_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LEASEHOLD_TEST_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL: set LEASEHOLD_TEST_PG_BIN or `apt-get install postgresql` \
             (scripts/test.sh does both)"
        )
    })
}

fn postgres_user() -> (Uid, Gid) {
    let user = User::from_name("postgres")
        .expect("look up the postgres user")
        .expect("no `postgres` OS user: install the postgresql package");
    (user.uid, user.gid)
}

/// A command that runs as the `postgres` OS user (no supplementary groups).
fn as_postgres(program: &Path) -> Command {
    let (uid, gid) = postgres_user();
    let mut cmd = Command::new(program);
    cmd.uid(uid.as_raw())
        .gid(gid.as_raw())
        .env("HOME", "/tmp")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

impl Postgres {
    /// Creates and starts a cluster, waiting until it accepts connections.
    pub fn start() -> Postgres {
        let bin = pg_bin_dir();
        let (uid, gid) = postgres_user();
        let dir = tempfile::Builder::new()
            .prefix("leasehold-pg")
            .tempdir()
            .expect("temp dir");
        chown(dir.path(), Some(uid), Some(gid)).expect("chown pg dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod pg dir");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir).expect("socket dir");
        chown(&socket_dir, Some(uid), Some(gid)).expect("chown socket dir");
        let log = dir.path().join("postgres.log");

        let password = random_hex(16);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("pwfile");
        chown(&pwfile, Some(uid), Some(gid)).expect("chown pwfile");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .expect("chmod pwfile");

        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);

        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let logfile = std::fs::File::create(&log).expect("pg log");
            chown(&log, Some(uid), Some(gid)).expect("chown pg log");
            let mut cmd = as_postgres(&bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&socket_dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=50"])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(logfile.try_clone().expect("dup log"))
                .stderr(logfile);
            let mut child = spawn_tied_to_thread(&mut cmd).expect("start postgres");
            match wait_ready(&mut child, &bin, port, &password, &log) {
                Ok(()) => {
                    return Postgres {
                        child,
                        bin,
                        port,
                        password,
                        socket_dir,
                        log,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
                    let retry = e.contains("could not bind") || e.contains("already in use");
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name (`postgres`).
    pub fn superuser(&self) -> &str {
        "postgres"
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        tail_of_file(&self.log, usize::MAX)
    }

    /// A `postgresql://` URL for `user`/`password` on this server's `postgres` database.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` as the superuser; panics on error. Returns psql's unaligned, tuples-only output
    /// without the final newline (rows on lines, columns separated by `|`).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_as("postgres", &self.password, sql)
            .unwrap_or_else(|e| panic!("psql failed for {sql:?}: {e}"))
    }

    /// Runs `sql` as `user` with `password` over TCP (so it really checks the password).
    /// Returns the output, or psql's error text.
    pub fn psql_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        psql(&self.bin, self.port, user, password, sql)
    }

    /// Whether a role of that name exists (`pg_roles`).
    pub fn role_exists(&self, role: &str) -> bool {
        let escaped = role.replace('\'', "''");
        self.psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{escaped}'"
        )) == "1"
    }

    /// Names of the login roles other than `postgres`.
    pub fn login_roles(&self) -> Vec<String> {
        self.psql(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname <> 'postgres' ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

fn psql(bin: &Path, port: u16, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn wait_ready(
    child: &mut Child,
    bin: &Path,
    port: u16,
    password: &str,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "postgres exited with {status}; log:\n{}",
                tail_of_file(log, 4000)
            ));
        }
        if psql(bin, port, "postgres", password, "SELECT 1").is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "postgres not ready after {START_TIMEOUT:?}; log:\n{}",
                tail_of_file(log, 4000)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT = "fast" shutdown: it does not wait for clients (OpenBao's database plugin keeps
        // connections open, so the default "smart" SIGTERM shutdown would wait for them).
        stop_child(&mut self.child, Signal::SIGINT, Duration::from_secs(15));
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log (port {}) ---\n{}",
                self.port,
                tail_of_file(&self.log, 8000)
            );
        }
    }
}
