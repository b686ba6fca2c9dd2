//! Throw-away certificates for TLS tests, made with the `openssl` CLI (Debian's `openssl`
//! package; `scripts/test.sh` installs it).
//!
//! [`Pki::generate`] writes into a temp dir: a CA, a server certificate for `127.0.0.1`
//! (subjectAltName `IP:127.0.0.1`, `DNS:localhost`) and a client certificate, both signed by that
//! CA, and a second, unrelated CA with a client certificate of its own. Keys are unencrypted P-256 keys in PKCS#8 PEM; certificates
//! are valid for two days from now.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The certificates and keys, removed with the temp dir on drop.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// `openssl req` options for a new unencrypted P-256 key.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

impl Pki {
    /// Generates everything (about 0.1 s); panics with openssl's output when a step fails.
    pub fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("leasehold-pki")
            .tempdir()
            .expect("temp dir");
        let pki = Pki { dir };
        pki.self_signed_ca("ca", "leasehold test CA");
        pki.self_signed_ca("other-ca", "unrelated test CA");
        pki.signed(
            "server",
            "ca",
            "127.0.0.1",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        pki.signed(
            "client",
            "ca",
            "leasehold-test-client",
            "extendedKeyUsage=clientAuth\n",
        );
        pki.signed(
            "other-client",
            "other-ca",
            "leasehold-test-client",
            "extendedKeyUsage=clientAuth\n",
        );
        pki
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The server certificate (for 127.0.0.1 and localhost).
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server certificate's key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The client certificate (extendedKeyUsage clientAuth).
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    /// A client certificate signed by [`Pki::other_ca`], which servers here do not trust.
    pub fn other_client_cert(&self) -> PathBuf {
        self.path("other-client.pem")
    }

    /// [`Pki::other_client_cert`]'s key.
    pub fn other_client_key(&self) -> PathBuf {
        self.path("other-client.key")
    }

    /// The temp dir holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn self_signed_ca(&self, name: &str, common_name: &str) {
        openssl(
            self.dir(),
            &["req", "-x509"],
            &NEW_KEY,
            &[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={common_name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    /// A key, a CSR and a certificate signed by `issuer` (a CA's name) with the given extra
    /// extensions.
    fn signed(&self, name: &str, issuer: &str, common_name: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"
            ),
        )
        .expect("write extensions");
        openssl(
            self.dir(),
            &["req", "-new"],
            &NEW_KEY,
            &[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={common_name}"),
            ],
        );
        // Serials must differ per issuer; random ones do.
        let serial = format!("0x{}", super::random_hex(8));
        openssl(
            self.dir(),
            &["x509", "-req"],
            &[],
            &[
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{issuer}.pem"),
                "-CAkey",
                &format!("{issuer}.key"),
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

fn openssl(dir: &Path, command: &[&str], key: &[&str], args: &[&str]) {
    let output = Command::new("openssl")
        .args(command)
        .args(key)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run openssl ({e}); install Debian's openssl package (scripts/test.sh does)"
            )
        });
    assert!(
        output.status.success(),
        "openssl {command:?} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
