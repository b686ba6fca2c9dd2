//! placeholder
use crate::error::FailureKind;
/// placeholder
#[derive(Debug, thiserror::Error)]
#[error("resolution")]
pub struct ResolutionError;
impl ResolutionError { /// kind
 pub fn failure_kind(&self) -> FailureKind { FailureKind::System } }
