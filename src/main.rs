//! The `leasehold` binary: everything lives in the library.

fn main() {
    std::process::exit(leasehold::run(std::env::args_os()));
}
