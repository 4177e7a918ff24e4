//! `rampart keys`: the status of encryption at rest, and the rotations. Runs beside a live server
//! (SQLite in WAL mode lets both open the database; servers pick up a new KEK or epoch on their
//! own). Results go to stdout, logs to stderr; every rotation is audited by the app.

use std::io::Write;
use std::sync::Arc;

use rampart_core::ChannelId;

use super::KeysCommand;
use crate::config::Config;

pub async fn run(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    super::serve::init_logging(&Config { log_level: "warn".to_owned(), ..config.clone() }, false);
    let app = super::serve::open_app(&config, Arc::new(rampart_app::NoLiveConnections)).await?;
    let failed = |what: &'static str| move |e: rampart_app::AppError| anyhow::anyhow!("{what}: {e}");
    match command {
        KeysCommand::Status => {
            let status = app.key_status().await.map_err(failed("cannot read the key status"))?;
            match status.active_kek() {
                Some(version) => println!("active KEK: version {version}"),
                None => println!("active KEK: none"),
            }
            println!("KEK versions:");
            for kek in &status.keks {
                let file = if kek.in_key_dir { "file in key_dir" } else { "no file in key_dir" };
                println!(
                    "  version {}: {}, wraps {} data keys, {file}",
                    kek.version,
                    kek.state.as_str(),
                    kek.data_keys
                );
            }
            println!("channels with data keys: {}", status.channels_with_keys);
            println!("data keys (channel epochs): {}", status.data_keys);
            println!("messages sealed under an older epoch: {}", status.messages_on_old_epochs);
        }
        KeysCommand::RotateKek { rekey: true } => rekey(&app).await?,
        KeysCommand::RotateKek { rekey: false } => {
            let mut report = |rewrapped: u64| {
                eprint!("\rre-wrapped {rewrapped} data keys");
                let _ = std::io::stderr().flush();
            };
            let done = app.rotate_kek(&mut report).await.map_err(failed("KEK rotation failed"))?;
            eprintln!();
            let from = done.from.map_or_else(|| "none".to_owned(), |v| v.to_string());
            println!("KEK rotated: version {from} -> {}; {} data keys re-wrapped", done.to, done.rewrapped);
            for version in &done.retired {
                println!("KEK version {version} retired; its file was deleted from key_dir");
            }
        }
        KeysCommand::RotateDek { channel } => {
            let channel = match channel.as_deref() {
                Some(text) => Some(ChannelId::parse(text).ok_or_else(|| anyhow::anyhow!("not a channel id: {text}"))?),
                None => None,
            };
            let started = app.rotate_dek(channel.as_ref()).await.map_err(|e| match e {
                rampart_app::AppError::NotFound => anyhow::anyhow!("no such channel"),
                other => anyhow::anyhow!("data key rotation failed: {other}"),
            })?;
            println!("new data-key epoch started for {started} channels; running servers use it within a few seconds");
        }
        KeysCommand::Reencrypt => {
            let mut report = |p: rampart_app::Reencryption| {
                eprint!("\rre-sealed {} messages, {} to go", p.resealed, p.remaining);
                let _ = std::io::stderr().flush();
            };
            let done = app.reencrypt(&mut report).await.map_err(failed("re-encryption failed"))?;
            eprintln!();
            println!("re-sealed {} messages; {} remain on older epochs", done.resealed, done.remaining);
            if done.unreadable > 0 {
                println!("{} messages failed their integrity check and were left as they are", done.unreadable);
            }
        }
    }
    Ok(())
}

/// `rotate-kek --rekey`: the full re-key, with a progress bar on stderr when it is a terminal.
async fn rekey(app: &rampart_app::App) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use rampart_app::RekeyStep;
    use std::io::IsTerminal;

    let bar = ProgressBar::with_draw_target(
        Some(1),
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    let style = ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} ({elapsed})")
        .map_err(|e| anyhow::anyhow!("progress bar: {e}"))?
        .progress_chars("=> ");
    bar.set_style(style);
    let mut report = |step: RekeyStep, done: u64, to_go_or_total: u64| {
        let (message, total) = match step {
            RekeyStep::NewEpochs => ("new data keys for every channel", to_go_or_total),
            RekeyStep::Reencrypt => ("re-sealing messages", done + to_go_or_total),
            RekeyStep::Search => ("rebuilding search indexes", to_go_or_total),
            RekeyStep::Destroy => ("destroying the old keys", to_go_or_total),
        };
        bar.set_message(message);
        bar.set_length(total.max(1));
        bar.set_position(done);
    };
    let done = app.rekey(&mut report).await.map_err(|e| anyhow::anyhow!("re-key failed (run it again to finish): {e}"));
    bar.finish_and_clear();
    let done = done?;
    let from = done.kek.from.map_or_else(|| "none".to_owned(), |v| v.to_string());
    println!("re-keyed: KEK version {from} -> {}", done.kek.to);
    println!("new data-key epochs: {} channels", done.epochs_started);
    println!("messages re-sealed: {}", done.reencrypted.resealed);
    println!("search indexes rebuilt: {} channels", done.search_channels);
    println!("old data keys destroyed: {}", done.data_keys_destroyed);
    for version in &done.kek.retired {
        println!("KEK version {version} retired; its file was deleted from key_dir");
    }
    if done.reencrypted.unreadable > 0 {
        println!("{} messages failed their integrity check and were left as they are", done.reencrypted.unreadable);
    }
    if done.data_keys_kept > 0 {
        println!(
            "{} old data keys still seal files or unreadable messages; they were re-wrapped under the new KEK, not destroyed",
            done.data_keys_kept
        );
    }
    Ok(())
}
