//! `tidewater`: the streaming server. See the `tidewater_server` crate docs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tidewater::CancellationToken;
use tidewater_server::{Config, Server, ShutdownSignals, logging};

/// Exit status of a configuration error (as for a usage error).
const EXIT_CONFIG: u8 = 2;

/// Live-media streaming server. Runs with built-in defaults (HTTP API on
/// 0.0.0.0:8888); a TOML file and TIDEWATER_SECTION__KEY environment
/// variables override any setting.
#[derive(Debug, Parser)]
#[command(name = "tidewater", version)]
struct Cli {
    /// Configuration file (TOML); keys it leaves out keep their defaults.
    #[arg(short, long, value_name = "FILE", env = tidewater_server::config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars_os()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tidewater: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = logging::init(&config.log) {
        eprintln!("tidewater: {:#}", anyhow::Error::from(e));
        return ExitCode::from(EXIT_CONFIG);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tidewater: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // Installed before anything is bound: a signal that arrives once the
        // server reports it is listening always means a graceful stop.
        let mut signals = ShutdownSignals::install()?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "tidewater starting");
        tracing::debug!("effective configuration: {config:?}");
        let server = Server::bind(&config).await?;
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = signals.recv().await;
            tracing::info!("{name} received: stopping (a second signal exits at once)");
            trigger.cancel();
            let name = signals.recv().await;
            tracing::warn!("{name} received again: exiting now");
            std::process::exit(130);
        });
        server.serve(shutdown).await?;
        Ok(())
    })
}
