//! `rampart invite`: create a one-time invitation from the command line and print only its token on
//! stdout (logs go to stderr). Works whether or not the server runs: SQLite in WAL mode lets both
//! open the database. Audited as an action of `system`.

use rampart_core::Role;

use crate::config::Config;

pub async fn run(config: Config, role: &str, hours: Option<u32>) -> anyhow::Result<()> {
    super::serve::init_logging(&Config { log_level: "warn".to_owned(), ..config.clone() }, false);
    let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
    let app = super::serve::open_app(&config, std::sync::Arc::new(rampart_app::NoLiveConnections)).await?;
    let issued = app
        .create_system_invitation(role, hours, "command line")
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the invitation: {}", e.client_message()))?;
    println!("{}", issued.token.expose());
    Ok(())
}
