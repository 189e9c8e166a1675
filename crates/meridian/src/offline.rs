//! `meridian apps …` and `meridian keys …`: the admin API's app and key creation, offline.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meridian_collector::{KeyRegistry, Scope};
use meridian_event::AppId;
use meridian_server::StateBackend;
use meridian_state::KvStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
    /// Data directory of the server.
    #[arg(long, global = true, env = "MERIDIAN_DATA_DIR", default_value = "./meridian-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app.
    Create {
        /// App id: 1-64 of [a-z0-9_.-].
        id: String,
    },
    /// List apps.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// Data directory of the server.
    #[arg(long, global = true, env = "MERIDIAN_DATA_DIR", default_value = "./meridian-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for an app; prints the secret once.
    Create {
        /// The app.
        #[arg(long)]
        app: String,
        /// Scopes: write, read, admin (repeat or comma-separate).
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}

/// Opens the data directory's state with the backend it was created with (the default for a
/// new one).
fn open_registry(data_dir: &Path) -> anyhow::Result<KeyRegistry> {
    let backend = StateBackend::for_data_dir(data_dir);
    let store: Arc<dyn KvStore> = backend.open(data_dir).with_context(|| format!("cannot open the state in {}", data_dir.display()))?;
    Ok(KeyRegistry::open(store, None)?)
}

pub(crate) fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let registry = open_registry(&args.data_dir)?;
    match args.command {
        AppsCommand::Create { id } => {
            let app = AppId::new(id)?;
            let record = registry.create_app(&app)?;
            println!("created app {}", record.id);
        }
        AppsCommand::List => {
            for app in registry.apps() {
                println!("{}", app.id);
            }
        }
    }
    Ok(())
}

pub(crate) fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let registry = open_registry(&args.data_dir)?;
    match args.command {
        KeysCommand::Create { app, scopes } => {
            let app = AppId::new(app)?;
            let scopes = scopes
                .iter()
                .map(|s| Scope::parse(s.trim()).ok_or_else(|| anyhow::anyhow!("unknown scope {s:?}; use write, read or admin")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (secret, record) = registry.create_key(&app, &scopes)?;
            eprintln!("created key {} for app {} with scopes {:?}; it is shown only once:", record.key_id, app, scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>());
            println!("{secret}");
        }
    }
    Ok(())
}
