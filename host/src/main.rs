//! The `host` binary; see `host --help` and [`taskhost::cli`].

/// mimalloc rather than the system allocator: a third of the host's samples per no-op task were
/// glibc `malloc`/`free` (BENCHMARKS.md, "Queue throughput").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    taskhost::cli::main()
}
