//! A real OpenSSH server per test, and the local accounts tests run jobs as.
//!
//! `Sshd::start(user)` creates the local account `user` if it is missing ([`ensure_user`]),
//! generates a host key and a client key (`ssh-keygen -t ed25519`) in a temp dir, and runs
//! `/usr/sbin/sshd -D -e -f <config>` on a free loopback port: public-key logins only, for that
//! one user, with the authorized key in the temp dir, no PAM, its own PID file. sshd needs an
//! absolute path and its privilege-separation dir `/run/sshd`, which is created when missing.
//! The server is stopped by its PID on drop. `scripts/test.sh` installs `openssh-server`.
//!
//! ```ignore
//! let sshd = Sshd::start("lh-ssh-job");
//! assert_eq!(sshd.ssh("id -un").stdout, b"lh-ssh-job\n");
//! let opts = sshd.driver_env().into_iter().fold(RunOptions::new(), |o, (k, v)| o.env(&k, v));
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Group, User};

use super::proc::{spawn_tied_to_thread, stop_child};
use super::{free_port, tail_of_file};

/// The OpenSSH server binary (it must be started by its absolute path).
const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `useradd`/`groupadd` are retried while another process holds the passwd lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A local account, as the system databases describe it.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Runs an account-management command, retrying while another one holds the lock on
/// /etc/passwd or /etc/group (tests run in parallel). `ok_codes` are exit codes that mean done.
fn run_admin(program: &str, args: &[&str], ok_codes: &[i32]) {
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let code = out.status.code().unwrap_or(-1);
        if code == 0 || ok_codes.contains(&code) {
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let locked = stderr.contains("lock") || stderr.contains("try again");
        assert!(
            locked && Instant::now() < deadline,
            "{program} {args:?} failed ({code}): {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates the group `name` when it does not exist; returns its gid.
pub fn ensure_group(name: &str) -> u32 {
    if Group::from_name(name).expect("look up group").is_none() {
        // 9: the group exists (created concurrently).
        run_admin("groupadd", &[name], &[9]);
    }
    Group::from_name(name)
        .expect("look up group")
        .unwrap_or_else(|| panic!("group {name} was not created"))
        .gid
        .as_raw()
}

/// Creates the local user `name` when missing (`useradd -m`, bash as its shell, a group of its
/// own) and makes it a member of every group in `extra_groups` (created when missing). Its
/// password field is `*`: no password login, but not "locked" (`!`), which sshd without PAM
/// would refuse even for a key. Accounts are left in place for later runs.
pub fn ensure_user(name: &str, extra_groups: &[&str]) -> TestUser {
    for group in extra_groups {
        ensure_group(group);
    }
    let groups = extra_groups.join(",");
    if User::from_name(name).expect("look up user").is_none() {
        let mut args = vec!["-m", "-U", "-s", "/bin/bash", "-p", "*"];
        if !groups.is_empty() {
            args.extend(["-G", groups.as_str()]);
        }
        args.push(name);
        // 9: the user exists (created concurrently).
        run_admin("useradd", &args, &[9]);
    }
    let user = User::from_name(name)
        .expect("look up user")
        .unwrap_or_else(|| panic!("user {name} was not created"));
    let cname = std::ffi::CString::new(name).expect("user name");
    let member_of = nix::unistd::getgrouplist(&cname, user.gid).expect("getgrouplist");
    for group in extra_groups {
        let gid = Group::from_name(group).expect("group").expect("group").gid;
        if !member_of.contains(&gid) {
            run_admin("usermod", &["-a", "-G", group, name], &[]);
        }
    }
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = shadow.lines().any(|line| {
        let mut fields = line.split(':');
        fields.next() == Some(name) && fields.next().is_some_and(|p| p.starts_with('!'))
    });
    if locked {
        run_admin("usermod", &["-p", "*", name], &[]);
    }
    TestUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    }
}

/// A running sshd that lets one user in with one key, stopped (by PID) on drop.
pub struct Sshd {
    child: Child,
    port: u16,
    user: TestUser,
    client_key: PathBuf,
    known_hosts: PathBuf,
    log: PathBuf,
    // Last, so the files outlive the process.
    _dir: tempfile::TempDir,
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

impl Sshd {
    /// Starts sshd for `user` (created when missing) and waits until it listens.
    pub fn start(user: &str) -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "no {SSHD}: run scripts/test.sh (it installs openssh-server)"
        );
        let user = ensure_user(user, &[]);
        let dir = tempfile::Builder::new()
            .prefix("leasehold-sshd")
            .tempdir()
            .expect("temp dir");
        // sshd reads the authorized keys as the target user: it must be able to reach them.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod sshd dir");
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ed25519");
        keygen(&host_key, "leasehold-test-host");
        keygen(&client_key, "leasehold-test-client");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized_keys");
        // The privilege-separation dir sshd insists on (Debian's service creates it at boot).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))
            .expect("chmod /run/sshd");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");

        let config = dir.path().join("sshd_config");
        let log = dir.path().join("sshd.log");
        let known_hosts = dir.path().join("known_hosts");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
                     AuthorizedKeysFile {authorized}\nAllowUsers {name}\nStrictModes no\n\
                     UsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin no\nUseDNS no\n\
                     PrintMotd no\nX11Forwarding no\nAllowTcpForwarding no\n\
                     AllowAgentForwarding no\nPermitUserEnvironment no\nLogLevel VERBOSE\n",
                    host_key = host_key.display(),
                    pid = dir.path().join("sshd.pid").display(),
                    authorized = authorized.display(),
                    name = user.name,
                ),
            )
            .expect("write sshd_config");
            std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n"))
                .expect("write known_hosts");
            let log_file = std::fs::File::create(&log).expect("sshd log");
            let mut cmd = Command::new(SSHD);
            cmd.args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup log"))
                .stderr(log_file);
            let mut child = spawn_tied_to_thread(&mut cmd).expect("start sshd");
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            let deadline = Instant::now() + START_TIMEOUT;
            let ready = loop {
                if std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening)) {
                    break Ok(());
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!(
                        "sshd exited with {status}: {}",
                        tail_of_file(&log, 2000)
                    ));
                }
                if Instant::now() >= deadline {
                    break Err(format!("sshd did not listen: {}", tail_of_file(&log, 2000)));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match ready {
                Ok(()) => {
                    return Sshd {
                        child,
                        port,
                        user,
                        client_key,
                        known_hosts,
                        log,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
                    let retry = e.contains("Address already in use");
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("sshd did not start: {last_error}");
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account logins are allowed for.
    pub fn user(&self) -> &TestUser {
        &self.user
    }

    /// The client's private key (0600, owned by the test's user).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// A known_hosts file naming the server's host key.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        tail_of_file(&self.log, 20_000)
    }

    /// The environment `tests/fixtures/ssh-driver` reads its target from.
    pub fn driver_env(&self) -> Vec<(String, String)> {
        vec![
            ("SSH_DRIVER_HOST".into(), "127.0.0.1".into()),
            ("SSH_DRIVER_PORT".into(), self.port.to_string()),
            ("SSH_DRIVER_USER".into(), self.user.name.clone()),
            (
                "SSH_DRIVER_KEY".into(),
                self.client_key.display().to_string(),
            ),
            (
                "SSH_DRIVER_KNOWN_HOSTS".into(),
                self.known_hosts.display().to_string(),
            ),
        ]
    }

    /// Runs `command` on the server as the user (no stdin), like the driver does.
    pub fn ssh(&self, command: &str) -> Output {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "LogLevel=ERROR", "-i"])
            .arg(&self.client_key)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user.name))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(5));
    }
}
