//! `rampart search rebuild [--channel ID]`: rebuild the blind search index under fresh search
//! keys while the server runs (audited).

use std::sync::Arc;

use rampart_core::ChannelId;

use super::SearchCommand;
use crate::config::Config;

pub async fn run(config: Config, command: SearchCommand) -> anyhow::Result<()> {
    super::serve::init_logging(&Config { log_level: "warn".to_owned(), ..config.clone() }, false);
    let app = super::serve::open_app(&config, Arc::new(rampart_app::NoLiveConnections)).await?;
    match command {
        SearchCommand::Rebuild { channel } => {
            let channel = match channel.as_deref() {
                Some(text) => Some(ChannelId::parse(text).ok_or_else(|| anyhow::anyhow!("not a channel id: {text}"))?),
                None => None,
            };
            let (channels, messages) = app.rebuild_search(channel.as_ref()).await.map_err(|e| match e {
                rampart_app::AppError::NotFound => anyhow::anyhow!("no such channel"),
                other => anyhow::anyhow!("search rebuild failed: {other}"),
            })?;
            println!("search index rebuilt under new keys: {channels} channels, {messages} messages");
        }
    }
    Ok(())
}
