//! `meridian actions backfill NAME`: asks the running server to back-fill an aggregation
//! from the log (the events from before it went live) and follows the back-fill with a
//! progress bar (records read of records to read) until it is done. The server keeps
//! serving and processing meanwhile; the back-fill's steps run in the aggregation's
//! processor, so a restart resumes it.
//!
//! `meridian actions recompute NAME`: the lambda merge — asks the server to recompute the
//! aggregation's older days from the log (later days stay live) and follows it the same
//! way, through its batch, switch-over and cleanup phases.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use meridian_api::actions::{BackfillJob, RecomputeJob};
use meridian_api::ErrorBody;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct ActionsArgs {
    #[command(subcommand)]
    command: ActionsCommand,
}

#[derive(Debug, Subcommand)]
enum ActionsCommand {
    /// Back-fill aggregation NAME from the log on a running server.
    Backfill {
        /// The aggregation (a name of [[actions.aggregations]]).
        name: String,
        /// Also fire the triggers whose conditions the back-filled values make true.
        #[arg(long)]
        refire: bool,
        /// Server base URL.
        #[arg(long, env = "MERIDIAN_URL", default_value = "http://127.0.0.1:7070")]
        url: String,
        /// The master key (or a global admin's key).
        #[arg(long, env = "MERIDIAN_KEY", hide_env_values = true)]
        key: String,
    },
    /// Recompute aggregation NAME's older days from the log on a running server (the
    /// last `actions.live_days` days stay live).
    Recompute {
        /// The aggregation (a name of [[actions.aggregations]]).
        name: String,
        /// Server base URL.
        #[arg(long, env = "MERIDIAN_URL", default_value = "http://127.0.0.1:7070")]
        url: String,
        /// The master key (or a global admin's key).
        #[arg(long, env = "MERIDIAN_KEY", hide_env_values = true)]
        key: String,
    },
}

async fn api_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => anyhow::anyhow!("server answered {status} {}: {}", body.error.code, body.error.message),
        Err(_) => anyhow::anyhow!("server answered {status} without an error body"),
    }
}

/// The back-fill endpoint of aggregation `name` (encoded as one path segment).
fn endpoint(url: &str, name: &str) -> anyhow::Result<reqwest::Url> {
    job_endpoint(url, name, "backfill")
}

/// The `job` (`backfill`, `recompute`) endpoint of aggregation `name`.
fn job_endpoint(url: &str, name: &str, job: &str) -> anyhow::Result<reqwest::Url> {
    let mut endpoint = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    endpoint
        .path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{url:?} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["v1", "actions", "aggregations", name, job]);
    Ok(endpoint)
}

pub(crate) fn run(args: ActionsArgs) -> anyhow::Result<()> {
    let (name, refire, url, key) = match args.command {
        ActionsCommand::Backfill { name, refire, url, key } => (name, refire, url, key),
        ActionsCommand::Recompute { name, url, key } => return recompute(&name, &url, &key),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let endpoint = endpoint(&url, &name)?;
        let started = client
            .post(endpoint.clone())
            .query(&[("refire", refire)])
            .bearer_auth(&key)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}; is the server running?"))?;
        if !started.status().is_success() {
            return Err(api_error(started).await);
        }
        let mut job: BackfillJob = started.json().await?;
        let bar = ProgressBar::new(job.total);
        bar.set_style(ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})")?.progress_chars("=> "));
        bar.set_message("back-filling");
        while !job.done {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let response = client.get(endpoint.clone()).bearer_auth(&key).send().await?;
            if !response.status().is_success() {
                return Err(api_error(response).await);
            }
            job = response.json().await?;
            bar.set_length(job.total);
            bar.set_position(job.read);
        }
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&job)?);
        Ok(())
    })
}

fn recompute(name: &str, url: &str, key: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let endpoint = job_endpoint(url, name, "recompute")?;
        let started = client.post(endpoint.clone()).bearer_auth(key).send().await.with_context(|| format!("cannot reach {url}; is the server running?"))?;
        if !started.status().is_success() {
            return Err(api_error(started).await);
        }
        let mut job: RecomputeJob = started.json().await?;
        let bar = ProgressBar::new(job.total);
        bar.set_style(ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})")?.progress_chars("=> "));
        while job.phase != "done" {
            bar.set_message(job.phase.clone());
            tokio::time::sleep(Duration::from_millis(200)).await;
            let response = client.get(endpoint.clone()).bearer_auth(key).send().await?;
            if !response.status().is_success() {
                return Err(api_error(response).await);
            }
            job = response.json().await?;
            bar.set_length(job.total.max(job.read));
            bar.set_position(job.read);
        }
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&job)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_encodes_the_name_and_ignores_a_trailing_slash() {
        assert_eq!(endpoint("http://h:1/", "orders").unwrap().as_str(), "http://h:1/v1/actions/aggregations/orders/backfill");
        assert_eq!(endpoint("http://h:1", "a/b c").unwrap().as_str(), "http://h:1/v1/actions/aggregations/a%2Fb%20c/backfill");
        assert!(endpoint("not a url", "x").is_err());
        assert_eq!(job_endpoint("http://h:1", "orders", "recompute").unwrap().as_str(), "http://h:1/v1/actions/aggregations/orders/recompute");
    }
}
