//! `eyeson-hard-limit`: parse the command line, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use eyeson_hard_limit::{cli, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_logging(args.log_format);
    cli::run(args).await
}
