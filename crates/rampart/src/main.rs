//! The `rampart` binary: thin glue. It parses the command line and hands off to `cli`; exit status
//! 0 on success, 1 on failure with a one-line reason on stderr, 2 on bad usage (clap's own).
#![forbid(unsafe_code)]

mod audit_format;
mod clamd;
mod cli;
mod cluster;
mod config;
mod config_alerts;
mod config_cluster;
mod config_database;
mod config_files;
mod forward;
mod fsutil;
mod gateway;
mod http;
mod metrics;
mod node;
mod prefixed;
mod proxy;
mod secrets;
mod server;
mod storage;
mod tls;
mod webhook;

use clap::Parser;

/// How long the runtime waits for leftover tasks after the command has finished.
const RUNTIME_SHUTDOWN_MS: u64 = 1_000;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rampart: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::run(args));
    // Tasks still running (a socket past the drain, a blocking job) are not waited for long: a
    // stop is bounded.
    runtime.shutdown_timeout(std::time::Duration::from_millis(RUNTIME_SHUTDOWN_MS));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of causes joined, never a backtrace.
            let reason = format!("{error:#}").replace('\n', " ");
            eprintln!("rampart: {reason}");
            std::process::ExitCode::from(1)
        }
    }
}
