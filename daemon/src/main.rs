//! The `orch` binary: parse the command line, start logging, hand over to `orch::cli`.

fn main() {
    std::process::exit(orch::cli::main());
}
