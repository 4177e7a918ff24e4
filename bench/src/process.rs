//! Server processes under test: started with their output in a log file, ready when the log says
//! where they listen, measured through `/proc/PID/status`, and killed when dropped, so no server
//! outlives the run. Also the CPU time of shared services (PostgreSQL, NATS) found by name, and
//! one-shot helper commands run with a time limit.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server may take to say where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_POLL: Duration = Duration::from_millis(50);
/// Lines of a server's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for
/// user space whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub struct ServerProcess {
    pub name: &'static str,
    pub address: SocketAddr,
    child: Child,
    log_path: PathBuf,
}

/// A process's resident memory, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// All resident pages (`VmRSS`).
    pub rss_kib: u64,
    /// Resident anonymous pages (`RssAnon`): the heap, stacks and other private memory; RSS less
    /// file-backed pages (the binary's code, memory-mapped database files), which the kernel
    /// can drop and read again, and which do not grow with connections.
    pub anon_kib: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory { rss_kib: self.rss_kib + other.rss_kib, anon_kib: self.anon_kib + other.anon_kib }
    }
}

/// The resident memory of `pid` (`/proc/PID/status`).
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    Ok(Memory {
        rss_kib: status_kib(&status, "VmRSS:").context("no VmRSS line in /proc/PID/status")?,
        anon_kib: status_kib(&status, "RssAnon:").context("no RssAnon line in /proc/PID/status")?,
    })
}

/// The CPU time `pid` has used so far (user and system, all its threads), in seconds.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).context("no utime and stime in /proc/PID/stat")?;
    Ok(ticks as f64 / USER_HZ)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The value of a `/proc/PID/status` line such as `VmRSS:  1536 kB`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value),
        _ => None,
    }
}

/// Finds `marker` followed by `https://ADDR` in `log`, and returns ADDR.
fn listening_address(log: &str, marker: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let after = &line[line.find(marker)? + marker.len()..];
    let url = after.trim_start().strip_prefix("https://")?;
    let end = url.find(|c: char| c.is_whitespace() || c == '/' || c == '"').unwrap_or(url.len());
    url[..end].parse().ok()
}

/// The CPU time (seconds) used so far by every process whose command name (`/proc/PID/comm`)
/// is `command`, e.g. all of PostgreSQL's backends; processes that exit meanwhile are not counted.
pub fn cpu_secs_of_command(command: &str) -> anyhow::Result<f64> {
    let mut ticks = 0_u64;
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if command_name(&stat) == Some(command) {
            ticks += parse_cpu_ticks(&stat).unwrap_or(0);
        }
    }
    Ok(ticks as f64 / USER_HZ)
}

/// Field 2 of a `/proc/PID/stat` line, without its parentheses.
fn command_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// Runs `command` to its end within `timeout`; `what` names it in errors. A missing program is
/// reported as such, with `install` as the hint.
pub async fn output_within(
    mut command: Command,
    timeout: Duration,
    what: &str,
    install: &str,
) -> anyhow::Result<std::process::Output> {
    command.stdin(Stdio::null());
    let output = tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || command.output()))
        .await
        .with_context(|| format!("{what} took longer than {timeout:?}"))?
        .with_context(|| format!("{what}: task"))?;
    match output {
        Ok(output) => Ok(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("cannot run {what}: not installed ({install})")
        }
        Err(error) => Err(error).with_context(|| format!("cannot run {what}")),
    }
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr in `log_path`, and waits until the log has the
    /// line with `marker` followed by the address it listens on.
    pub async fn start(name: &'static str, command: Command, log_path: &Path, marker: &str) -> anyhow::Result<Self> {
        let mut server = Self::spawn(name, command, log_path, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        server.wait_for_address(marker).await?;
        Ok(server)
    }

    /// Starts `command` with stdout and stderr in `log_path`, for a server that says nothing
    /// about where it listens: the caller knows `address` and how to tell when it is ready.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log_path: &Path,
        address: SocketAddr,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        command.stdin(Stdio::null()).stdout(log.try_clone().context("log file")?).stderr(log);
        let child = command.spawn().with_context(|| format!("cannot start the {name} server"))?;
        Ok(ServerProcess { name, address, child, log_path: log_path.to_owned() })
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn wait_for_address(&mut self, marker: &str) -> anyhow::Result<()> {
        let (name, server) = (self.name, self);
        let started = Instant::now();
        loop {
            let text = server.log_text();
            if let Some(address) = listening_address(&text, marker) {
                server.address = address;
                return Ok(());
            }
            if let Some(status) = server.child.try_wait().context("server status")? {
                bail!("the {name} server exited ({status}) before listening; its log ends:\n{}", server.log_tail());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the {name} server did not say where it listens within {:?}; its log ends:\n{}",
                    START_TIMEOUT,
                    server.log_tail()
                );
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid())
    }

    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        cpu_secs(self.pid())
    }

    /// Fails if the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("server status")? {
            bail!("the {} server exited ({status}); its log ends:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[start..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Nothing of the server's state is kept, so there is no need for a graceful stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resident_memory() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\nRssAnon:\t  1024 kB\nThreads:\t3\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1536));
        assert_eq!(status_kib(status, "RssAnon:"), Some(1024));
        assert_eq!(status_kib("Name:\tx\n", "VmRSS:"), None);
        assert_eq!(status_kib("VmRSS:\t  1536 MB\n", "VmRSS:"), None);
        let own = memory(std::process::id()).expect("own memory");
        assert!(own.rss_kib >= own.anon_kib && own.anon_kib > 0);
    }

    #[test]
    fn reads_cpu_time() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
        assert!(cpu_secs(std::process::id()).expect("own CPU time") >= 0.0);
    }

    #[test]
    fn finds_processes_by_command_name() {
        assert_eq!(command_name("42 (a (b) c) S 1"), Some("a (b) c"));
        assert_eq!(command_name("42 x S 1"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let own = command_name(&own).expect("own name").to_owned();
        assert!(cpu_secs_of_command(&own).expect("CPU of this program") >= 0.0);
        assert_eq!(cpu_secs_of_command("no such command here").expect("none"), 0.0);
    }

    #[test]
    fn finds_the_listening_address() {
        let rampart =
            "2026-01-01T00:00:00Z  INFO rampart is listening on https://127.0.0.1:8443 url=https://127.0.0.1:8443\n";
        assert_eq!(
            listening_address(rampart, "rampart is listening on"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8443)))
        );
        let baseline = "baseline is listening on https://[::1]:9000\n";
        assert_eq!(listening_address(baseline, "baseline is listening on"), "[::1]:9000".parse().ok());
        assert_eq!(listening_address("starting\n", "listening on"), None);
    }
}
