//! `tidewater`: the streaming server. See the `tidewater_server` crate docs.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tidewater::CancellationToken;
use tidewater_server::{Config, ConfigSource, Server, ShutdownSignals, logging};

/// Exit status of a configuration error (as for a usage error).
const EXIT_CONFIG: u8 = 2;

/// Live-media streaming server. Runs with built-in defaults (HTTP API on
/// 0.0.0.0:8888); a TOML file and TIDEWATER_SECTION__KEY environment
/// variables override any setting. SIGHUP reloads the configuration (the
/// auth section applies at once; other changes need a restart).
#[derive(Debug, Parser)]
#[command(name = "tidewater", version)]
struct Cli {
    /// Configuration file (TOML); keys it leaves out keep their defaults.
    #[arg(short, long, value_name = "FILE", env = tidewater_server::config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hashes a password with argon2id and prints the PHC string, for
    /// `password_hash` of a user in the auth section. Reads the password from
    /// the first line of standard input.
    HashPassword {
        /// The password itself, instead of standard input (for scripts; it
        /// shows in the process list and the shell's history).
        #[arg(long)]
        password: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword { password }) = cli.command {
        return match hash_password(password) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                logging::print_error(format_args!(
                    "tidewater: hash-password: {}",
                    logging::one_line(e.as_ref())
                ));
                ExitCode::FAILURE
            }
        };
    }
    let source = ConfigSource::new(cli.config, std::env::vars_os());
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            logging::print_error(format_args!("tidewater: {}", logging::one_line(&e)));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Held to the end of `main`: dropping it writes out the queued lines.
    let _log = match logging::init(&config.log) {
        Ok(guard) => guard,
        Err(e) => {
            logging::print_error(format_args!("tidewater: {}", logging::one_line(&e)));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let outcome = run(config, source);
    let dropped = logging::dropped_lines();
    if dropped > 0 {
        tracing::warn!("{dropped} log lines were dropped: standard error did not keep up");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, through the same non-blocking writer as every other
            // (a direct write could block on a full pipe, or fail on a
            // closed one).
            tracing::error!("tidewater: {}", logging::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `tidewater hash-password`: the PHC string of the password on stdout.
fn hash_password(password: Option<String>) -> anyhow::Result<()> {
    let password = match password {
        Some(p) => p,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                // No way to hide the echo without a terminal library.
                eprint!("password (shown as typed): ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.strip_suffix('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .unwrap_or(&line)
                .to_string()
        }
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let phc = tidewater_auth::hash_password(&password)?;
    println!("{phc}");
    Ok(())
}

fn run(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // Installed before anything is bound: a signal that arrives once the
        // server reports it is listening always means a graceful stop (or,
        // for SIGHUP, a reload rather than the default of exiting).
        let mut signals = ShutdownSignals::install()?;
        #[cfg(unix)]
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "tidewater starting");
        tracing::debug!("effective configuration: {config:?}");
        let server = Server::bind(&config).await?.reloads_from(source);
        #[cfg(unix)]
        {
            let reloader = server.reloader();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    // The reloader logs the outcome.
                    let _ = reloader.reload().await;
                }
            });
        }
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
