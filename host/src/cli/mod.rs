//! The `host` command line: `run` starts a worker and the API in one process; `submit`, `status`,
//! `cancel`, `queues` and `plugins` talk to a running host's API.

mod client;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// taskhost runs scientific and engineering tasks as sandboxed WebAssembly components, fed from
/// queues, with live progress over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "host", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a worker and the API: consume queues, run tasks in sandboxes, serve REST and WebSocket.
    Run(run::RunArgs),
    /// Submit a task to a running host.
    Submit(client::SubmitArgs),
    /// Show a task.
    Status(client::IdArgs),
    /// Cancel a task (queued: it never starts; running: it stops within milliseconds).
    Cancel(client::IdArgs),
    /// Show queue counts.
    Queues(client::ServerArgs),
    /// List tasks as a table (newest first).
    Tasks(client::TasksArgs),
    /// A live view of the queue and the running tasks (Ctrl-C to leave).
    Watch(client::ServerArgs),
    /// List the plugins a host serves, with their limits.
    Plugins(client::ServerArgs),
    /// Print a new random API token and the SHA-256 to put in a tenants file.
    Token,
}

/// Parses arguments and runs the command; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Submit(args) => client::submit(args).await,
            Command::Status(args) => client::status(args).await,
            Command::Cancel(args) => client::cancel(args).await,
            Command::Queues(args) => client::queues(args).await,
            Command::Tasks(args) => client::tasks(args).await,
            Command::Watch(args) => client::watch(args).await,
            Command::Plugins(args) => client::plugins(args).await,
            Command::Token => token(),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn token() -> anyhow::Result<std::process::ExitCode> {
    let (token, hash) = crate::tenant::new_token()?;
    println!("token:        {token}");
    println!("token_sha256: {hash}");
    eprintln!("Give the token to the tenant; put only token_sha256 in the tenants file.");
    Ok(std::process::ExitCode::SUCCESS)
}

/// The default data folder.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(".taskhost")
}
