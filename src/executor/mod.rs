//! placeholder
use crate::error::FailureKind;
/// placeholder
#[derive(Debug, thiserror::Error)]
#[error("executor")]
pub struct ExecutorError;
impl ExecutorError { /// kind
 pub fn failure_kind(&self) -> FailureKind { FailureKind::System } }
