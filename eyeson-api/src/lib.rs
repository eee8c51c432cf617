//! The eyeson contract, written once.
//!
//! `eyeson-hard-limit` talks to eyeson and `eyeson-sandbox` stands in for
//! it; both depend on this crate, so a change to the contract breaks the
//! compiler (or this crate's tests), not production:
//! - [`signature`]: `X-Eyeson-Signature`, HMAC-SHA256 over the raw body,
//!   keyed with the API key; signing and constant-time checking.
//! - [`wire`]: the JSON both sides exchange. Writers are strict types (what
//!   the sandbox and the test fakes send); readers are the lenient shapes
//!   the service accepts (every field optional or untyped, so that it can
//!   name the one that is wrong and skip, rather than refuse, what it does
//!   not need). Each reader sits next to its writer, and the tests check
//!   that whatever is written is read.
//! - [`paths`]: the endpoints, as percent-encoded paths for clients and as
//!   route templates for servers.
//!
//! Facts about eyeson behind these choices: `shared/eyeson-api.md`.
#![deny(missing_docs)]

pub mod paths;
pub mod signature;
pub mod wire;

pub use signature::{sign, verify, SIGNATURE_HEADER};
