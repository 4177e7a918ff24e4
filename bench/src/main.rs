//! `loadgen`: the Rampart load generator's entry point — parses the flags once, runs the scenario
//! against each chosen target in turn under a hard overall timeout, and prints the report;
//! `loadgen baseline-server` runs the bare baseline server instead.
#![forbid(unsafe_code)]

mod baseline;
mod cluster;
mod metrics;
mod options;
mod process;
mod rampart;
mod report;
mod tls;
mod workload;
mod ws;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::options::{Cli, Command, Plan};
use crate::report::Report;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::BaselineServer(args)) => baseline::serve(args).await,
        None => match cli.run.validate() {
            Ok(plan) => run(plan).await,
            Err(error) => {
                eprintln!("loadgen: {error:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let dir = WorkDir::create(plan.keep_dir)?;
    // Every server is a child that is killed when its handle drops, so leaving this function by
    // any path — done, failed, timed out, interrupted — stops them.
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(plan.timeout, run_targets(&plan, dir.path())) => {
            outcome.map_err(|_| anyhow::anyhow!("the run took longer than --timeout-secs {}", plan.timeout.as_secs()))
        }
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let report = outcome??;
    if plan.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn run_targets(plan: &Plan, dir: &Path) -> anyhow::Result<Report> {
    let mut reports = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        match plan.binary(*target) {
            Some(bin) => {
                eprintln!("loadgen: running {:?} against {} ({})", plan.scenario, plan.label(*target), bin.display())
            }
            None => eprintln!("loadgen: running {:?} against {}", plan.scenario, target.name()),
        }
        let report =
            workload::run_target(plan, *target, dir).await.with_context(|| format!("{} target", target.name()))?;
        reports.push(report);
    }
    Ok(Report::new(plan, reports))
}

/// The run's temporary directory (server data, keys, certificates, logs), removed at the end
/// unless `--keep-dir`.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> anyhow::Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("rampart-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, keep })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("loadgen: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
