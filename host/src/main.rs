//! The `host` binary; see `host --help` and [`taskhost::cli`].

fn main() -> std::process::ExitCode {
    taskhost::cli::main()
}
