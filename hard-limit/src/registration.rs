//! Sharing eyeson's one webhook per API key with the app that embeds
//! eyeson: what to register, given what is registered ([`decide`]), and the
//! error that stops the service from cutting off another receiver
//! ([`ForeignWebhook`]). Another URL's registration is refused by default,
//! joined with `--forward-to` (the union of both sets of types, every
//! delivery forwarded) or replaced with `--webhook-replace`.
//!
//! URLs are shown without their query string, which may carry a token.

use reqwest::Url;

use crate::eyeson::{ApiError, EyesonClient, Webhook, WEBHOOK_TYPES};
use crate::secrets::loggable_url;

/// What to do with a webhook registered to another URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Leave it; the service refuses to start (the default).
    Refuse,
    /// Replace it (`--webhook-replace`).
    Replace,
    /// Take its types over and forward every delivery (`--forward-to`).
    Forward,
}

/// What the service does about the registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ours, with the types we want: nothing to do.
    Unchanged,
    /// `POST /webhooks` with our URL and these types (one comma-separated
    /// string), replacing `replacing` if that was another URL.
    Register {
        /// The types, sorted, comma-separated.
        types: String,
        /// The other URL's registration this replaces, if any.
        replacing: Option<Webhook>,
    },
    /// Another URL is registered and the mode says leave it.
    RefuseForeign(Webhook),
}

/// Whether `hook` is registered to `ours` (compared as URLs too: `Url`
/// writes a bare host with a trailing slash, which eyeson may have stored
/// without). `unregister` asks the same.
pub fn is_ours(hook: &Webhook, ours: &Url) -> bool {
    hook.url == ours.as_str() || Url::parse(&hook.url).is_ok_and(|u| u == *ours)
}

/// Decides what to register for `ours`, given the `current` registration:
/// `room_update` when nothing or our own URL is registered (with
/// `--forward-to`, plus the types our registration took over earlier).
pub fn decide(current: Option<&Webhook>, ours: &Url, mode: Mode) -> Decision {
    fn mine(extra: &[String]) -> Vec<String> {
        let mut types: Vec<String> = extra.to_vec();
        types.push(WEBHOOK_TYPES.to_owned());
        types.retain(|t| !t.is_empty());
        types.sort_unstable();
        types.dedup();
        types
    }
    let Some(current) = current else {
        return Decision::Register {
            types: WEBHOOK_TYPES.to_owned(),
            replacing: None,
        };
    };
    if is_ours(current, ours) {
        let want = if mode == Mode::Forward {
            mine(&current.types)
        } else {
            mine(&[])
        };
        if current.types == want {
            return Decision::Unchanged;
        }
        return Decision::Register {
            types: want.join(","),
            replacing: None,
        };
    }
    match mode {
        Mode::Refuse => Decision::RefuseForeign(current.clone()),
        Mode::Replace => Decision::Register {
            types: WEBHOOK_TYPES.to_owned(),
            replacing: Some(current.clone()),
        },
        Mode::Forward => Decision::Register {
            types: mine(&current.types).join(","),
            replacing: Some(current.clone()),
        },
    }
}

/// Another URL's webhook is registered for the API key, and the service
/// was not told what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the eyeson webhook of this API key is registered to {url} (types: {types}), not to --webhook-url. \
eyeson keeps one webhook per API key: registering this service would cut that receiver off, so it was left alone. \
Choose one: --forward-to {url} (FORWARD_TO: the service registers for both and forwards every delivery to it, body and X-Eyeson-Signature unchanged), \
--webhook-replace (WEBHOOK_REPLACE: replace it; its receiver gets nothing more), \
or unset --webhook-url and have the app forward its room_update deliveries, body and X-Eyeson-Signature unchanged, to this service's /webhook. \
(URLs are shown without query string.)"
)]
pub struct ForeignWebhook {
    /// The registered URL, scheme, host, port and path only.
    pub url: String,
    /// Its types, comma-separated.
    pub types: String,
}

impl ForeignWebhook {
    /// Describes a registration without its URL's query string.
    pub fn of(hook: &Webhook) -> Self {
        ForeignWebhook {
            url: loggable_url(&hook.url),
            types: if hook.types.is_empty() {
                "none".into()
            } else {
                hook.types.join(",")
            },
        }
    }
}

/// Registers `target` for `room_update` in place of whatever else is
/// registered (`--webhook-replace`); whether it registered.
pub async fn ensure(client: &EyesonClient, target: &Url) -> Result<bool, ApiError> {
    match decide(
        client.current_webhook().await?.as_ref(),
        target,
        Mode::Replace,
    ) {
        Decision::Unchanged | Decision::RefuseForeign(_) => Ok(false),
        Decision::Register { types, .. } => {
            client.register_webhook(target, &types).await?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "https://hard-limit.example.com/webhook";

    fn hook(url: &str, types: &[&str]) -> Webhook {
        Webhook {
            id: "w".into(),
            url: url.into(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn register(types: &str, replacing: Option<Webhook>) -> Decision {
        Decision::Register {
            types: types.into(),
            replacing,
        }
    }

    const MODES: [Mode; 3] = [Mode::Refuse, Mode::Replace, Mode::Forward];

    #[test]
    fn nothing_registered_registers_room_update() {
        let ours: Url = OURS.parse().unwrap();
        for mode in MODES {
            assert_eq!(decide(None, &ours, mode), register("room_update", None));
        }
    }

    /// Asserts what `decide` makes of `current` for our URL in `mode`.
    fn check(current: &Webhook, mode: Mode, want: Decision) {
        let ours: Url = OURS.parse().unwrap();
        assert_eq!(decide(Some(current), &ours, mode), want, "{mode:?}");
    }

    #[test]
    fn a_foreign_registration_is_refused_replaced_or_joined() {
        let app = hook(
            "https://app.example.com/eyeson-hook",
            &["recording_update", "room_update"],
        );
        check(&app, Mode::Refuse, Decision::RefuseForeign(app.clone()));
        check(
            &app,
            Mode::Replace,
            register("room_update", Some(app.clone())),
        );
        check(
            &app,
            Mode::Forward,
            register("recording_update,room_update", Some(app.clone())),
        );
        let snaps = hook("https://app.example.com/h", &["snapshot_update"]);
        check(
            &snaps,
            Mode::Forward,
            register("room_update,snapshot_update", Some(snaps.clone())),
        );
    }

    #[test]
    fn our_own_registration_keeps_the_types_it_forwards() {
        for mode in MODES {
            check(&hook(OURS, &["room_update"]), mode, Decision::Unchanged);
        }
        let wide = hook(OURS, &["recording_update", "room_update"]);
        // Forwarding: the app's types taken over earlier stay.
        check(&wide, Mode::Forward, Decision::Unchanged);
        let partial = hook(OURS, &["recording_update"]);
        check(
            &partial,
            Mode::Forward,
            register("recording_update,room_update", None),
        );
        // Not forwarding: types nobody receives any more are dropped.
        check(&wide, Mode::Refuse, register("room_update", None));
        // A bare host stored without its trailing slash is ours.
        let bare: Url = "https://hooks.example.com".parse().unwrap();
        let stored = hook("https://hooks.example.com", &["room_update"]);
        let decided = decide(Some(&stored), &bare, Mode::Refuse);
        assert_eq!(decided, Decision::Unchanged);
    }

    #[test]
    fn the_refusal_names_url_types_and_ways_out_but_no_query() {
        let app = hook(
            "https://app.example.com/eyeson-hook?token=s3cret",
            &["recording_update", "room_update"],
        );
        let msg = ForeignWebhook::of(&app).to_string();
        assert!(msg.contains("https://app.example.com/eyeson-hook"), "{msg}");
        assert!(msg.contains("recording_update,room_update"), "{msg}");
        for way in ["--forward-to", "--webhook-replace", "/webhook"] {
            assert!(msg.contains(way), "{way}: {msg}");
        }
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
