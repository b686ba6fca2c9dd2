//! The admin tools, beside the stages rather than among them: `plan` (what a job would get),
//! `check` (is this runner set up safely) and `reap` (take back what crashed jobs left). They
//! run on an operator's command, not gitlab-runner's, and share nothing with the stages but the
//! config.

pub(crate) mod check;
pub(crate) mod plan;
pub(crate) mod reap;
