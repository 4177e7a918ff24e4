//! `rampart db provision`: with an administrator's connection, create (idempotently) the schema
//! and its three roles — migrator (owns the tables), app (what `serve` connects as) and auditor
//! (reads the audit tables) — migrate the schema as the migrator and set every grant. A role made
//! now gets a random password, written to a 0600 file in `--password-dir` or else printed once on
//! stdout; it is never logged, the server receives only its SCRAM verifier, and an existing role
//! keeps its password.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rampart_store::postgres::roles::{provision, ProvisionReport, RoleNames};
use rampart_store::{PgOptions, PgTls};
use secrecy::ExposeSecret;

use crate::fsutil;
use crate::secrets::{self, UserInfo};

/// What `rampart db provision` is told.
#[derive(Debug)]
pub struct ProvisionRequest {
    pub admin_url: String,
    pub schema: String,
    pub tls: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub password_dir: Option<PathBuf>,
}

/// 256 bits from the OS CSPRNG as base64url, as for session tokens.
fn new_password() -> String {
    rampart_crypto::Token::generate().expose().to_owned()
}

fn admin_options(request: &ProvisionRequest) -> anyhow::Result<PgOptions> {
    let env = |name: &str| std::env::var_os(name);
    let resolved = secrets::secret_url("--admin-url", &request.admin_url, UserInfo::NameOnly, &env)?;
    if let Some(warning) = &resolved.warning {
        eprintln!("warning: {warning}");
    }
    let mut options = PgOptions::from_url(resolved.value.expose_secret())?.with_schema(&request.schema)?;
    let tls = match request.tls.as_deref() {
        Some(text) => Some(PgTls::parse(text).ok_or_else(|| anyhow::anyhow!("--tls: `{text}` is not an sslmode"))?),
        None if request.ca_file.is_some() => Some(PgTls::VerifyFull),
        None => None,
    };
    if let Some(tls) = tls {
        options = options.with_tls(tls, request.ca_file.as_deref())?;
    }
    Ok(options)
}

/// Writes (or prints) each new role's password; says where, never what, on stderr.
fn hand_over_passwords(report: &ProvisionReport, password_dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = password_dir {
        fsutil::ensure_private_dir(dir)?;
    }
    let mut stdout = std::io::stdout().lock();
    for role in &report.roles {
        let Some(password) = &role.password else {
            eprintln!("role {}: exists; its password is unchanged", role.name);
            continue;
        };
        match password_dir {
            Some(dir) => {
                let path = dir.join(format!("{}.password", role.name));
                fsutil::write_private(&path, format!("{}\n", password.as_str()).as_bytes())?;
                eprintln!("role {}: created; its password is in {} (mode 0600)", role.name, path.display());
            }
            None => {
                // Shown once: it is stored nowhere else.
                writeln!(stdout, "{} {}", role.name, password.as_str())?;
                eprintln!("role {}: created; its password is printed above, once", role.name);
            }
        }
    }
    Ok(())
}

pub async fn run(request: ProvisionRequest) -> anyhow::Result<()> {
    let admin = admin_options(&request)?;
    let report = provision(&admin, &mut new_password)
        .await
        .with_context(|| format!("cannot provision schema {} on {}", admin.schema(), admin.host()))?;
    hand_over_passwords(&report, request.password_dir.as_deref())?;
    let names = RoleNames::for_schema(&report.schema);
    eprintln!(
        "schema {} is provisioned and migrated. Serve as {} (database_url) with {} as database.migrator_url; \
         {} may read the audit log",
        report.schema, names.app, names.migrator, names.auditor
    );
    Ok(())
}
