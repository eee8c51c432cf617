//! What the binary does with its command line: logging, signals, and the
//! subcommands. Kept out of `main.rs` so it is documented and testable.

use std::process::ExitCode;
use std::sync::Arc;

use crate::app::Application;
use crate::config::{Cli, Command, Config};
use crate::eyeson::EyesonClient;
use crate::notify::{self, Notifier};

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the command; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => serve(cli.config).await,
        Command::Unregister => unregister(cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("eyeson-hard-limit: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let notifier = Arc::new(Notifier::from_env());
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
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
            tokio::spawn(notify::feed_watchdog(
                notifier.clone(),
                every,
                app.tasks_ok(),
            ))
        });
    let stopping = notifier.clone();
    let stop = async move {
        shutdown_signal().await;
        stopping.notify("STOPPING=1");
    };
    let result = app.run_until_stopped(stop).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    result.map_err(|e| e.to_string())
}

async fn unregister(config: Config) -> Result<(), String> {
    let client = EyesonClient::new(config.api_url, config.api_key).map_err(|e| e.to_string())?;
    let Some(current) = client.current_webhook().await.map_err(|e| e.to_string())? else {
        tracing::info!("no webhook registered");
        return Ok(());
    };
    if let Some(mine) = &config.webhook_url {
        if current.url != mine.as_str() {
            return Err(format!(
                "the registered webhook ({}) is not --webhook-url; leaving it alone",
                current.url
            ));
        }
    }
    if current.id.is_empty() {
        return Err("the registered webhook has no id to delete".into());
    }
    client
        .delete_webhook(&current.id)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(url = %current.url, "webhook unregistered");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
