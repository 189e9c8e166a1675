//! `meridian history rebuild`: rebuilds the running server's cold history tier from the
//! log (last 60 days, N per user, minus deletions) and follows it with a progress bar.
//! The server keeps serving reads and processing events meanwhile.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use meridian_api::history::RebuildStatus;
use meridian_api::ErrorBody;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Rebuild the cold tier from the log on a running server.
    Rebuild {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
        /// The server's master key.
        #[arg(long, env = "MERIDIAN_MASTER_KEY", hide_env_values = true)]
        master_key: String,
    },
}

async fn api_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => anyhow::anyhow!("server answered {status} {}: {}", body.error.code, body.error.message),
        Err(_) => anyhow::anyhow!("server answered {status} without an error body"),
    }
}

pub(crate) fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let HistoryCommand::Rebuild { url, master_key } = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let endpoint = format!("{}/v1/admin/history/rebuild", url.trim_end_matches('/'));
        let started = client.post(&endpoint).bearer_auth(&master_key).send().await.with_context(|| format!("cannot reach {url}; is the server running?"))?;
        if !started.status().is_success() {
            return Err(api_error(started).await);
        }
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")?.progress_chars("=> "));
        bar.set_message("rebuilding");
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let response = client.get(&endpoint).bearer_auth(&master_key).send().await?;
            if !response.status().is_success() {
                return Err(api_error(response).await);
            }
            let status: RebuildStatus = response.json().await?;
            bar.set_length(status.total);
            bar.set_position(status.done);
            if !status.running {
                bar.finish_and_clear();
                if let Some(error) = status.error {
                    anyhow::bail!("rebuild failed: {error}");
                }
                println!("{}", serde_json::to_string_pretty(&status.report)?);
                return Ok(());
            }
        }
    })
}
