//! The command line: one module per subcommand. Flags override the config file; the config file
//! overrides defaults.

mod audit;
mod db;
mod invite;
mod keys;
mod search;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, RawConfig};

#[derive(Debug, Parser)]
#[command(name = "rampart", version, about = "Self-hosted enterprise messaging with the hardening built in.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create a one-time invitation and print only its token on stdout.
    Invite(InviteArgs),
    /// Encryption at rest: key status and rotations (safe while the server runs).
    Keys(KeysArgs),
    /// The audit log: verify its hash chain, export it, show the newest records. These never
    /// create a log: one that is not there is an error naming where it was looked for.
    Audit(AuditArgs),
    /// The message search index.
    Search(SearchArgs),
    /// PostgreSQL: the schema and its least-privilege roles.
    Db(DbArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create (idempotently) the schema, its migrator, app and auditor roles and their grants, and
    /// migrate it. New roles' passwords are printed once (or written to --password-dir).
    Provision {
        /// A superuser's URL; a reference (file:/path, credential:NAME, env:VAR) when it holds a password.
        #[arg(long, value_name = "URL")]
        admin_url: String,
        /// The schema; the roles are <schema>_migrator, <schema>_app and <schema>_auditor.
        #[arg(long, default_value = rampart_store::postgres::SCHEMA_DEFAULT)]
        schema: String,
        /// TLS to the server: disable, prefer, require, verify-ca or verify-full.
        #[arg(long, value_name = "MODE")]
        tls: Option<String>,
        /// The CA the server's certificate must chain to (PEM); implies --tls verify-full.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Write each new role's password to DIR/<role>.password (0600) instead of printing it.
        #[arg(long, value_name = "DIR")]
        password_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(subcommand)]
    pub command: SearchCommand,
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Rebuild the index under fresh search keys (safe while the server runs; resumable).
    Rebuild {
        /// The channel; every channel when left out.
        #[arg(long, value_name = "ID")]
        channel: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The server's audit directory, holding audit.db (audit_dir; default ./rampart-audit).
    /// SQLite only: with PostgreSQL the log is in the database.
    #[arg(long, global = true, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and check the signed checkpoints with the signing key in
    /// --key-dir. Exit 1 naming the first bad seq; also when the log or the key is missing, and
    /// when the log is empty while the key exists (records were removed, or it is another log).
    Verify {
        /// Checkpoints kept elsewhere (JSON lines, as the server writes them), checked too.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Print records as JSON lines or RFC 5424 syslog messages (the export is audited in the log).
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "syslog"])]
        format: String,
        /// Only records at or after this time (RFC 3339, or a date).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Print the newest records, and with --follow keep printing new ones.
    Tail {
        #[arg(short = 'n', long, default_value_t = rampart_core::limits::AUDIT_TAIL_DEFAULT)]
        lines: u32,
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// The active KEK, KEK versions and the data keys each wraps, channels and epochs.
    Status,
    /// Make a new KEK, re-wrap every data key under it, and retire (delete) the old one.
    ///
    /// This answers a lost or leaked KEK file while the database stayed safe. If a copy of the
    /// database may be in other hands as well, add --rekey.
    RotateKek {
        /// Full re-key after a compromise: besides the new KEK, a new data key (epoch) for every
        /// channel, every message re-sealed under it, every search index rebuilt under a new
        /// search key, then the old data keys destroyed and the old KEK retired — so an old copy of
        /// the database with the old KEK opens nothing current. Runs while the server serves;
        /// interrupted, run it again to finish. Shows a progress bar on a terminal.
        #[arg(long)]
        rekey: bool,
    },
    /// Start a new data-key epoch now, for one channel or every channel.
    RotateDek {
        /// The channel; every channel when left out.
        #[arg(long, value_name = "ID")]
        channel: Option<String>,
    },
    /// Re-seal messages of older epochs under their channel's current data key (resumable).
    Reencrypt,
}

/// Flags every subcommand that touches a deployment shares. Global, so that `rampart keys
/// status --config F` and `rampart keys --config F status` both work.
#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// The config file (TOML); see rampart.example.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, global = true, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// The database; a URL with a password must be a reference (file:/path, credential:NAME).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// HTTPS address, e.g. 0.0.0.0:443.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Admin listener address (loopback or VPN only).
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<String>,
    /// Plain-HTTP listener that only redirects to HTTPS.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_listen: Option<String>,
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// The https:// origin browsers use to reach this server.
    #[arg(long, value_name = "URL")]
    pub public_origin: Option<String>,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The role the invitation grants.
    #[arg(long, value_parser = ["owner", "admin", "member", "guest"])]
    pub role: String,
    /// Hours until the invitation expires (default 72, at most 720).
    #[arg(long, value_name = "HOURS")]
    pub expires_in_hours: Option<u32>,
}

/// Reads the config file if one is named, then lays the shared flags over it.
fn load(deployment: &DeploymentArgs, extra: impl FnOnce(&mut RawConfig)) -> anyhow::Result<Config> {
    let mut raw = match &deployment.config {
        Some(path) => config::read_file(path)?,
        None => RawConfig::default(),
    };
    if let Some(dir) = &deployment.data_dir {
        raw.data_dir = Some(dir.clone());
    }
    if let Some(dir) = &deployment.key_dir {
        raw.key_dir = Some(dir.clone());
    }
    if let Some(url) = &deployment.database_url {
        raw.database_url = Some(url.clone());
    }
    extra(&mut raw);
    Ok(raw.validate()?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = load(&args.deployment, |raw| {
                for (slot, flag) in [
                    (&mut raw.listen, &args.listen),
                    (&mut raw.admin_listen, &args.admin_listen),
                    (&mut raw.http_listen, &args.http_listen),
                    (&mut raw.nats_url, &args.nats_url),
                    (&mut raw.public_origin, &args.public_origin),
                ] {
                    if flag.is_some() {
                        slot.clone_from(flag);
                    }
                }
            })?;
            serve::run(config).await
        }
        Command::Invite(args) => {
            let config = load(&args.deployment, |_| {})?;
            invite::run(config, &args.role, args.expires_in_hours).await
        }
        Command::Search(args) => {
            let config = load(&args.deployment, |_| {})?;
            search::run(config, args.command).await
        }
        Command::Audit(args) => {
            let config = load(&args.deployment, |raw| {
                if args.audit_dir.is_some() {
                    raw.audit_dir.clone_from(&args.audit_dir);
                }
            })?;
            audit::run(config, args.command).await
        }
        Command::Db(args) => match args.command {
            DbCommand::Provision { admin_url, schema, tls, ca_file, password_dir } => {
                db::run(db::ProvisionRequest { admin_url, schema, tls, ca_file, password_dir }).await
            }
        },
        Command::Keys(args) => {
            let config = load(&args.deployment, |_| {})?;
            keys::run(config, args.command).await
        }
    }
}
