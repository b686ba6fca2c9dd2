//! Generates the packages' man pages and shell completions from the CLI definition
//! (`leasehold::cli::Cli`), so they can never drift from the real command line.
//!
//! ```text
//! cargo run --example gen_assets [OUT_DIR]      # default OUT_DIR: target/assets
//! ```
//!
//! Writes `OUT_DIR/man/leasehold.1` plus one page per subcommand (`leasehold-run.1`, …) and
//! `OUT_DIR/completions/{leasehold.bash,_leasehold,leasehold.fish}`. `scripts/package.sh` runs it
//! before building the .deb and .rpm, whose assets point at these files.
//!
//! clap_mangen and clap_complete are dev-dependencies, so the shipped binary does not grow.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Sections appended to `leasehold(1)`: what clap does not know about.
const EXTRA_SECTIONS: &str = r#".SH ENVIRONMENT
.TP
\fBLEASEHOLD_CONFIG\fR
The executor config file when \fB\-\-config\fR is not given.
.TP
\fBJOB_RESPONSE_FILE\fR, \fBBUILD_FAILURE_EXIT_CODE\fR, \fBSYSTEM_FAILURE_EXIT_CODE\fR, \fBCUSTOM_ENV_*\fR
Set by gitlab\-runner for every stage of a custom executor.
.SH FILES
.TP
\fI/etc/leasehold/config.toml\fR
The executor config (TOML; unknown keys are errors).
.TP
\fI/run/leasehold\fR
Private per\-job state (encrypted secrets, lease journals), created by systemd\-tmpfiles.
.TP
\fI/usr/lib/systemd/system/leasehold\-reaper.timer\fR, \fIleasehold\-reap.service\fR
Run \fBleasehold reap\fR every 15 minutes.
.TP
\fI/usr/share/doc/leasehold/\fR
README.md and docs/*.md: configuration, leases, bindings, masking, security.
.SH EXIT STATUS
The stages (\fBconfig\fR, \fBprepare\fR, \fBrun\fR, \fBcleanup\fR) exit 0 on success;
\fBBUILD_FAILURE_EXIT_CODE\fR (default 1) when the job's script failed (its own code is written to
\fBBUILD_EXIT_CODE_FILE\fR) or the job's input is at fault (a declaration, its ID token, a policy
refusal); \fBSYSTEM_FAILURE_EXIT_CODE\fR (default 2) when the host is at fault (the executor
config, Vault unreachable, the state directory), and from \fBcleanup\fR when something could
not be revoked and is left for \fBleasehold reap\fR; 128+N after signal N. With a wrapped custom
driver, \fBrun\fR passes the driver's exit code through.
The admin tools \fBplan\fR, \fBcheck\fR and \fBreap\fR exit 0 when all is well, 1 when they
found problems (\fBreap\fR: it had to take back credentials that outlived their job, or could
not), 2 on a usage error.
.SH SEE ALSO
\fBgitlab\-runner\fR(1), \fBsystemd.timer\fR(5), \fBtmpfiles.d\fR(5)
"#;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/assets"));
    let man_dir = out.join("man");
    let completions_dir = out.join("completions");
    for dir in [&man_dir, &completions_dir] {
        // Start clean: a subcommand that was removed must not leave its old page behind.
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(dir)?;
    }

    let cmd = leasehold::cli::Cli::command();
    let name = cmd.get_name().to_owned();

    // One page per subcommand (leasehold-run.1, …), then the main page with the extra sections.
    clap_mangen::generate_to(cmd.clone(), &man_dir)?;
    let main_page = man_dir.join(format!("{name}.1"));
    let mut file = std::fs::OpenOptions::new().append(true).open(&main_page)?;
    file.write_all(EXTRA_SECTIONS.as_bytes())?;

    let mut cmd = cmd;
    for (shell, file_name) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut buf);
        std::fs::write(completions_dir.join(file_name), buf)?;
    }

    list(&out)
}

/// Prints what was written, one path per line.
fn list(out: &Path) -> std::io::Result<()> {
    for sub in ["man", "completions"] {
        let mut entries: Vec<_> = std::fs::read_dir(out.join(sub))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            println!("{}", path.display());
        }
    }
    Ok(())
}
