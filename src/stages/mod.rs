//! placeholder
/// dispatch
pub fn dispatch(cli: crate::cli::Cli) -> i32 { let _ = cli; 0 }
