//! The command line (flags, with environment variables as fallbacks).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A local stand-in for eyeson: the REST API, the ActionCable and SEPP
/// websockets the eyeson JS SDK opens, and signed `room_update` webhooks.
/// Point the SDK's `config.api` (and any service's eyeson API URL) at it.
#[derive(Debug, Clone, Parser)]
#[command(name = "eyeson-sandbox", version)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port; the bound address is
    /// printed on stdout as `listening on http://ADDR`.
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8043")]
    pub listen: SocketAddr,

    /// The API key: expected in the `Authorization` header of API-key calls,
    /// and the key of the webhook signatures.
    #[arg(
        long,
        env = "EYESON_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub api_key: String,

    /// The eyeson JS SDK's `dist/eyeson.js`, served to the meeting page
    /// (`links.gui`, `links.guest_join`). Default: `node_modules/eyeson/dist/
    /// eyeson.js` in the current directory, the binary's, or a parent of
    /// either (the repository's, after `npm install`).
    #[arg(long, env = "SANDBOX_SDK")]
    pub sdk: Option<PathBuf>,
}
