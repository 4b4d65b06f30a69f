//! The `mom` command line: the operator, CRD generation and the offline tools.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
