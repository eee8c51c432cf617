//! What the binary does with its command line: logging, signals and the
//! subcommands (out of `main.rs`, so documented and testable).

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Config, Flags};
use crate::eyeson::EyesonClient;
use crate::notify::{self, Notifier};

/// Command line of `eyeson-hard-limit`.
#[derive(Debug, Parser)]
#[command(name = "eyeson-hard-limit", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub flags: Flags,
    /// Log lines as `text` (for people) or `json` (one object per line,
    /// for log shippers: `timestamp`, `level`, `target`, `message` and the
    /// event's own fields).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do; without one, run the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-06T18:00:00.000000Z  INFO target: message key=value`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Run,
    /// Delete the webhook registered for this API key, then exit. Refuses if
    /// --webhook-url is set and a different URL is registered (it belongs to
    /// someone else). The service itself never unregisters.
    Unregister,
}

/// Logs text to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    init_logging(LogFormat::Text);
}

/// Logs to stderr in `format`; `RUST_LOG` filters (default `info`).
///
/// JSON: one object per line, `timestamp` (RFC 3339, UTC), `level`,
/// `target`, `message` and the event's fields at the top level (the service
/// opens no spans). Values are formatted as in text, so the secrets'
/// redacted `Debug` applies alike; a panic is logged as an event too, so
/// every line of stderr stays JSON.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if format == LogFormat::Json && installed.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = (payload.downcast_ref::<&str>().copied())
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("non-text panic");
            let location = info.location().map(|l| l.to_string()).unwrap_or_default();
            tracing::error!(panic = %message, location = %location, "panicked");
        }));
    }
}

type Failure = Box<dyn std::error::Error>;

/// Runs the command; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => serve(cli.flags).await,
        Command::Unregister => unregister(cli.flags).await,
    };
    let Err(message) = result else {
        return ExitCode::SUCCESS;
    };
    tracing::error!("{message}");
    // The plain line is for people; in JSON every line is an object.
    if cli.log_format == LogFormat::Text {
        eprintln!("eyeson-hard-limit: {message}");
    }
    ExitCode::FAILURE
}

async fn serve(flags: Flags) -> Result<(), Failure> {
    let notifier = Arc::new(Notifier::from_env());
    let app = Application::build(Config::try_from(flags)?).await?;
    // Ready only now: the store is open, migrated and writable, and both
    // listeners are bound (connections queue until the servers accept).
    notifier.notify(&format!(
        "READY=1\nSTATUS=listening on {}, admin on {}",
        app.local_addr(),
        app.admin_addr()
    ));
    let watchdog = notify::watchdog_interval()
        .filter(|_| notifier.is_active())
        .map(|every| {
            let feed = notify::feed_watchdog(notifier.clone(), every, app.tasks_ok());
            tokio::spawn(feed)
        });
    let stopping = notifier.clone();
    let stop = async move {
        stop_signal().await;
        stopping.notify("STOPPING=1");
    };
    let result = app.run_until_stopped(stop).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    Ok(result?)
}

async fn unregister(flags: Flags) -> Result<(), Failure> {
    let eyeson = config::Eyeson::try_from(&flags)?;
    let client = EyesonClient::new(eyeson.api_url, eyeson.api_key)?;
    let Some(current) = client.current_webhook().await? else {
        tracing::info!("no webhook registered");
        return Ok(());
    };
    let url = crate::secrets::loggable_url(&current.url);
    if flags
        .webhook_url
        .is_some_and(|mine| !crate::registration::is_ours(&current, &mine))
    {
        return Err(format!(
            "the registered webhook ({url}) is not --webhook-url; leaving it alone"
        )
        .into());
    }
    if current.id.is_empty() {
        return Err("the registered webhook has no id to delete".into());
    }
    client.delete_webhook(&current.id).await?;
    tracing::info!(url = %url, "webhook unregistered");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
