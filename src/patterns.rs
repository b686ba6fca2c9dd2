//! Glob patterns, compiled once, with one meaning everywhere.
//!
//! The config names things by glob in several places: the sub-stages that receive secrets
//! (`step_*`), the mounts, roles and auth mounts a job may use, the local users a claim may map to,
//! the projects a binding matches (`grp/**`). They all compile here, at config load (or when a
//! job's declaration is parsed), so an invalid pattern is an error that names its key, and no
//! caller compiles or silently drops one again.
//!
//! One semantics: `*` and `?` never cross a `/`, `**` does (globset's `literal_separator`). For
//! names without a `/` (stages, mounts, roles, users) that is plain wildcard matching.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled list of glob patterns.
#[derive(Clone)]
pub(crate) struct Patterns {
    texts: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    /// Compiles `patterns`; the error names the first invalid one.
    pub(crate) fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid pattern {pattern:?}: {}", e.kind()))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| format!("invalid patterns: {}", e.kind()))?;
        Ok(Patterns {
            texts: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
        })
    }

    /// Whether `value` matches one of the patterns (never, for an empty list).
    pub(crate) fn matches(&self, value: &str) -> bool {
        self.set.is_match(value)
    }

    /// As an allow-list: an empty list allows everything.
    pub(crate) fn allows(&self, value: &str) -> bool {
        self.texts.is_empty() || self.matches(value)
    }

    /// The patterns as written.
    pub(crate) fn texts(&self) -> &[String] {
        &self.texts
    }
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns {
            texts: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Patterns").field(&self.texts).finish()
    }
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.texts == other.texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_semantics_for_names_and_paths() {
        let p = Patterns::new(&["step_*", "grp/*", "deep/**", "ci-?"]).expect("valid");
        for yes in ["step_release", "grp/app", "deep/a/b/c", "ci-a"] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["build_script", "grp/sub/app", "ci-ab", "xgrp/app"] {
            assert!(!p.matches(no), "{no}");
        }
        assert!(
            Patterns::new(&["a[b"])
                .expect_err("invalid")
                .contains("a[b")
        );
        let empty = Patterns::default();
        assert!(!empty.matches("x"));
        assert!(empty.allows("x"));
        assert!(!p.allows("nope"));
    }
}
