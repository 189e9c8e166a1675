//! The `meridian` command line: serve, config check, apps, keys and operators, demo world,
//! history maintenance, user-action back-fills, benchmarks.

mod actions;
mod bench;
mod demo;
mod history;
mod loadgen;
mod offline;
mod serve;

use clap::{Parser, Subcommand};

// The ingest path allocates many small JSON maps; see docs/benchmarks.md for mimalloc
// against the system allocator (`--no-default-features`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Meridian: a self-hosted, real-time user-behaviour data platform.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<serve::ServeArgs>),
    /// Manage apps offline (the server must not be running on the data dir).
    Apps(offline::AppsArgs),
    /// Manage API keys offline (the server must not be running on the data dir).
    Keys(offline::KeysArgs),
    /// Manage console operators offline (the server must not be running on the data dir).
    Operators(offline::OperatorsArgs),
    /// Check a config file: print the effective config (secrets masked) or what is wrong.
    Config(ConfigArgs),
    /// Generate the demo world or send its events to a server.
    Demo(demo::DemoArgs),
    /// Browsing history maintenance on a running server.
    History(history::HistoryArgs),
    /// User actions on a running server: back-fill an aggregation from the log.
    Actions(actions::ActionsArgs),
    /// Benchmarks that drive the real server.
    Bench(bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load FILE with the environment, validate every section and print the effective
    /// config with secrets masked.
    Check(serve::ConfigCheckArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Apps(args) => offline::apps(args),
        Command::Keys(args) => offline::keys(args),
        Command::Operators(args) => offline::operators(args),
        Command::Config(args) => match args.command {
            ConfigCommand::Check(check) => serve::check(check),
        },
        Command::Demo(args) => demo::run(args),
        Command::History(args) => history::run(args),
        Command::Actions(args) => actions::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
