//! The `rampart` binary: thin glue. It parses the command line and hands off to `cli`; exit status
//! 0 on success, 1 on failure with a one-line reason on stderr, 2 on bad usage (clap's own).
#![forbid(unsafe_code)]

mod audit_format;
mod clamd;
mod cli;
mod config;
mod config_alerts;
mod config_files;
mod forward;
mod fsutil;
mod gateway;
mod http;
mod metrics;
mod prefixed;
mod secrets;
mod server;
mod tls;
mod webhook;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rampart: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of causes joined, never a backtrace.
            let reason = format!("{error:#}").replace('\n', " ");
            eprintln!("rampart: {reason}");
            std::process::ExitCode::from(1)
        }
    }
}
