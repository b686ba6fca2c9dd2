//! Glob patterns, compiled once, with one meaning everywhere.
//!
//! The config names things by glob in several places: the sub-stages that receive secrets
//! (`step_*`), the mounts, roles and auth mounts a job may use, the local users a claim may map to,
//! the projects a binding matches (`grp/**`). They all compile here, at config load (or when a
//! job's declaration is parsed), so an invalid pattern is an error that names its key, and no
//! caller compiles or silently drops one again.
//!
//! Load only parses them. The matcher (a regex set) is built on the first match: every stage
//! loads the whole config, most never match a pattern, and building the regex set at load made
//! `leasehold config` about 1 ms slower (a fifth of its start-up).
//!
//! One semantics: `*` and `?` never cross a `/`, `**` does (globset's `literal_separator`). For
//! names without a `/` (stages, mounts, roles, users) that is plain wildcard matching.

use std::sync::OnceLock;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A checked list of glob patterns.
#[derive(Clone, Default)]
pub(crate) struct Patterns {
    texts: Vec<String>,
    // Boxed: configs embed many lists, most of them empty.
    matcher: Box<Matcher>,
}

#[derive(Clone, Default)]
struct Matcher {
    globs: Vec<Glob>,
    set: OnceLock<GlobSet>,
}

impl Patterns {
    /// Checks `patterns`; the error names the first invalid one.
    pub(crate) fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let globs = patterns
            .iter()
            .map(|pattern| {
                let pattern = pattern.as_ref();
                GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("invalid pattern {pattern:?}: {}", e.kind()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Patterns {
            texts: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            matcher: Box::new(Matcher {
                globs,
                set: OnceLock::new(),
            }),
        })
    }

    /// Whether `value` matches one of the patterns (never, for an empty list).
    pub(crate) fn matches(&self, value: &str) -> bool {
        let matcher = &self.matcher;
        if matcher.globs.is_empty() {
            return false;
        }
        matcher.set.get_or_init(|| self.build_set()).is_match(value)
    }

    fn build_set(&self) -> GlobSet {
        let mut builder = GlobSetBuilder::new();
        for glob in &self.matcher.globs {
            builder.add(glob.clone());
        }
        // Parsed globs only fail to build past the regex size limit, which no config or
        // declaration comes near; matching nothing then is the closed side of every list.
        builder.build().unwrap_or_else(|e| {
            tracing::error!("glob patterns {:?} do not compile: {e}", self.texts);
            GlobSet::empty()
        })
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

    #[test]
    fn the_matcher_is_built_on_first_match_not_at_load() {
        let p = Patterns::new(&["step_*", "grp/**"]).expect("valid");
        assert!(p.matcher.set.get().is_none(), "built at load");
        let copy = p.clone();
        assert!(p.matches("step_a"));
        assert!(p.matcher.set.get().is_some());
        assert!(copy.matches("grp/a/b") && !copy.matches("x"));
    }
}
