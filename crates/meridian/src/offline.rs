//! `meridian apps …`, `meridian keys …` and `meridian operators …`: tenancy changes made
//! offline on a data directory (the server must not be running on it). They are audited
//! as the `system` actor: whoever can open the data directory administers the machine.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meridian_event::AppId;
use meridian_state::StateBackend;
use meridian_tenancy::{Actor, Grant, OperatorId, Role, Scope, Tenancy, TenancyConfig};
use std::path::{Path, PathBuf};

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
        /// IANA time zone its days are counted in.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
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

#[derive(Debug, Args)]
pub(crate) struct OperatorsArgs {
    #[command(subcommand)]
    command: OperatorsCommand,
    /// Data directory of the server.
    #[arg(long, global = true, env = "MERIDIAN_DATA_DIR", default_value = "./meridian-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum OperatorsCommand {
    /// Create a console operator. The password is read from MERIDIAN_OPERATOR_PASSWORD or
    /// standard input (never a flag: flags end up in shell history).
    Create {
        /// Login: 1-64 of [a-z0-9_.@-].
        login: String,
        /// Roles: `ROLE` (every app) or `ROLE@APP`; roles are viewer, operator, reviewer, admin.
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Name shown in the console.
        #[arg(long)]
        name: Option<String>,
    },
    /// List operators.
    List,
    /// Disable an operator (ends its sessions).
    Disable {
        /// Login.
        login: String,
    },
}

/// Opens the data directory's tenancy with the backend it was created with.
fn open_tenancy(data_dir: &Path) -> anyhow::Result<Tenancy> {
    let backend = StateBackend::for_data_dir(data_dir);
    let store = backend.open(data_dir).with_context(|| format!("cannot open the state in {}", data_dir.display()))?;
    Ok(Tenancy::open(store, None, TenancyConfig::default())?)
}

pub(crate) fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let tenancy = open_tenancy(&args.data_dir)?;
    match args.command {
        AppsCommand::Create { id, time_zone } => {
            let app = AppId::new(id)?;
            let record = tenancy.create_app(&Actor::System, &app, Some(&time_zone))?;
            println!("created app {} ({})", record.id, record.time_zone.as_str());
        }
        AppsCommand::List => {
            for app in tenancy.apps() {
                println!("{}\t{}", app.id, app.time_zone.as_str());
            }
        }
    }
    Ok(())
}

pub(crate) fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let tenancy = open_tenancy(&args.data_dir)?;
    match args.command {
        KeysCommand::Create { app, scopes } => {
            let app = AppId::new(app)?;
            let scopes = scopes
                .iter()
                .map(|s| Scope::parse(s.trim()).ok_or_else(|| anyhow::anyhow!("unknown scope {s:?}; use write, read or admin")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (secret, record) = tenancy.create_key(&Actor::System, &app, &scopes)?;
            eprintln!("created key {} for app {} with scopes {:?}; it is shown only once:", record.key_id, app, scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>());
            println!("{secret}");
        }
    }
    Ok(())
}

fn parse_grant(text: &str) -> anyhow::Result<Grant> {
    let (role, app) = match text.trim().split_once('@') {
        Some((role, app)) => (role, Some(AppId::new(app)?)),
        None => (text.trim(), None),
    };
    let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?}; use viewer, operator, reviewer or admin"))?;
    Ok(Grant { app, role })
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("MERIDIAN_OPERATOR_PASSWORD") {
        return Ok(password);
    }
    eprintln!("password (at least 10 characters), then Enter:");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn operators(args: OperatorsArgs) -> anyhow::Result<()> {
    let tenancy = open_tenancy(&args.data_dir)?;
    match args.command {
        OperatorsCommand::Create { login, roles, name } => {
            let id = OperatorId::new(&login)?;
            let grants = roles.iter().map(|r| parse_grant(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let password = read_password()?;
            let operator = tenancy.create_operator(&Actor::System, &id, name.as_deref().unwrap_or(&login), &password, &grants)?;
            println!("created operator {} with {}", operator.login, describe(&operator.grants));
        }
        OperatorsCommand::List => {
            for operator in tenancy.list_operators() {
                println!("{}\t{}\t{}\t{}", operator.login, operator.display_name, describe(&operator.grants), if operator.disabled { "disabled" } else { "enabled" });
            }
        }
        OperatorsCommand::Disable { login } => {
            let operator = tenancy.disable_operator(&Actor::System, &OperatorId::new(&login)?)?;
            println!("disabled operator {}; its sessions are ended", operator.login);
        }
    }
    Ok(())
}

fn describe(grants: &[Grant]) -> String {
    grants.iter().map(|g| match &g.app {
        Some(app) => format!("{}@{app}", g.role.as_str()),
        None => g.role.as_str().to_owned(),
    }).collect::<Vec<_>>().join(",")
}
