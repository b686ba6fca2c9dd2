//! Stage scripts as gitlab-runner's bash shell writes them (reference §5; shells/bash.go,
//! helpers/shell_escape.go).

use std::fmt::Write as _;

use super::job::Variable;

/// gitlab-runner's `ShellEscape`: the string as is when it needs no quoting, else ANSI-C
/// `$'…'` quoting with control and non-ASCII bytes as escapes (so the result is one ASCII line).
pub(crate) fn shell_escape(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let mut out = String::with_capacity(s.len() + 3);
    let mut quote = false;
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b','
            | b'.'
            | b'_'
            | b'+'
            | b':'
            | b'@'
            | b'%'
            | b'/'
            | b'-' => {
                out.push(char::from(b));
            }
            0x07 => push_escape(&mut out, &mut quote, "\\a"),
            0x08 => push_escape(&mut out, &mut quote, "\\b"),
            b'\t' => push_escape(&mut out, &mut quote, "\\t"),
            b'\n' => push_escape(&mut out, &mut quote, "\\n"),
            0x0b => push_escape(&mut out, &mut quote, "\\v"),
            0x0c => push_escape(&mut out, &mut quote, "\\f"),
            b'\r' => push_escape(&mut out, &mut quote, "\\r"),
            b'\'' => push_escape(&mut out, &mut quote, "\\'"),
            b'\\' => push_escape(&mut out, &mut quote, "\\\\"),
            0..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\x{b:02X}");
                quote = true;
            }
            _ => {
                out.push(char::from(b));
                quote = true;
            }
        }
    }
    if quote { format!("$'{out}'") } else { out }
}

fn push_escape(out: &mut String, quote: &mut bool, escape: &str) {
    out.push_str(escape);
    *quote = true;
}

/// Go's `%q` for the paths the bash writer prints (`"…"` with `\"` and `\\`).
fn go_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Accumulates a script body line by line.
#[derive(Default)]
pub(crate) struct ScriptBody {
    lines: Vec<String>,
}

impl ScriptBody {
    /// A raw line.
    pub(crate) fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.lines.push(line.into());
        self
    }

    /// `echo <message>` in the runner's notice colour.
    pub(crate) fn notice(&mut self, message: &str) -> &mut Self {
        self.line(format!(
            "echo {}",
            shell_escape(&format!("\x1b[32;1m{message}\x1b[0;m"))
        ))
    }

    /// `cd <dir>`.
    pub(crate) fn cd(&mut self, dir: &str) -> &mut Self {
        self.line(format!("cd {}", shell_escape(dir)))
    }

    /// `writeExports`: every variable; file variables are written to `<tmp_dir>/<KEY>` and
    /// exported as that path. `tmp_dir` is `<CI_PROJECT_DIR>.tmp` (`RUNNER_TEMP_PROJECT_DIR`).
    pub(crate) fn exports(&mut self, vars: &[Variable], tmp_dir: &str) -> &mut Self {
        for var in vars {
            if var.file {
                let path = format!("{tmp_dir}/{}", var.key);
                self.line(format!("mkdir -p {}", go_quote(tmp_dir)));
                self.line(format!(
                    "printf '%s' {} > {}",
                    shell_escape(&var.value),
                    go_quote(&path)
                ));
                self.line(format!(
                    "export {}={}",
                    shell_escape(&var.key),
                    go_quote(&path)
                ));
            } else {
                self.line(format!(
                    "export {}={}",
                    shell_escape(&var.key),
                    shell_escape(&var.value)
                ));
            }
        }
        let env_file = format!("{tmp_dir}/gitlab_runner_env");
        self.line(format!("export GITLAB_ENV={}", go_quote(&env_file)));
        self.line(format!(
            "if [ -f {0} ]; then set -o allexport; . {0}; set +o allexport; fi",
            go_quote(&env_file)
        ))
    }

    /// `writeEnvExports`: non-file variables, and file variables as paths only (not rewritten).
    pub(crate) fn env_exports(&mut self, vars: &[Variable], tmp_dir: &str) -> &mut Self {
        for var in vars {
            let value = if var.file {
                format!("{tmp_dir}/{}", var.key)
            } else {
                var.value.clone()
            };
            self.line(format!(
                "export {}={}",
                shell_escape(&var.key),
                shell_escape(&value)
            ));
        }
        self
    }

    /// The user's command lines, each announced with `$ <first line>` like the runner does.
    pub(crate) fn user_commands(&mut self, commands: &[String]) -> &mut Self {
        for command in commands {
            let command = command.trim();
            if command.is_empty() {
                self.line("echo");
            } else {
                let mut lines = command.splitn(2, '\n');
                let first = lines.next().unwrap_or_default();
                if lines.next().is_some() {
                    self.notice(&format!("$ {first} # collapsed multi-line command"));
                } else {
                    self.notice(&format!("$ {first}"));
                }
            }
            self.line(command);
        }
        self
    }

    /// The body text.
    pub(crate) fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// The whole script file (`BashWriter.Finish`).
    pub(crate) fn finish(&self, trace: bool) -> String {
        let mut script = String::from("#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\n");
        if trace {
            script.push_str("set -o xtrace\n");
        }
        script.push_str("set -o pipefail\nset -o errexit\nset +o noclobber\n");
        let _ = writeln!(
            script,
            "(trap 'exit 1' TERM; eval {}) < /dev/null",
            shell_escape(&self.text())
        );
        script.push_str("exit 0\n");
        script
    }
}

#[cfg(test)]
mod tests {
    use super::shell_escape;

    #[test]
    fn escapes_like_gitlab_runner() {
        assert_eq!(shell_escape(""), "''");
        assert_eq!(shell_escape("abc/DEF-1.2_x:y@z%+,"), "abc/DEF-1.2_x:y@z%+,");
        assert_eq!(shell_escape("a b"), "$'a b'");
        assert_eq!(shell_escape("it's"), "$'it\\'s'");
        assert_eq!(shell_escape("l1\nl2\t\\"), "$'l1\\nl2\\t\\\\'");
        assert_eq!(shell_escape("$HOME \"q\""), "$'$HOME \"q\"'");
        assert_eq!(shell_escape("é"), "$'\\xC3\\xA9'");
    }
}
