//! Webhook deliveries: eyeson's signature and the one task that POSTs them.
//!
//! One task, one delivery at a time: a meeting's start and end reach the
//! receiver in the order they happened. One attempt each, like a flaky
//! network would give; the outcome is logged as `webhook_delivered`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::meetings::{Delivery, Sandbox};

/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `X-Eyeson-Signature`: lowercase hex of HMAC-SHA256 over the raw body,
/// keyed with the API key itself ([`eyeson_api::signature`]).
pub use eyeson_api::sign;

/// Starts the delivery task; deliveries sent to the returned channel are
/// POSTed in order. The task ends when every sender is dropped.
pub(crate) fn spawn(sandbox: Arc<Mutex<Sandbox>>) -> mpsc::UnboundedSender<Delivery> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        // Receivers are local; a proxy from the environment must not get them.
        .no_proxy()
        .build()
        .expect("a client without TLS configuration builds");
    tokio::spawn(async move {
        while let Some(delivery) = rx.recv().await {
            let key = sandbox.lock().expect("sandbox lock").api_key().to_owned();
            let signature = sign(&key, delivery.body.as_bytes());
            let status = match client
                .post(&delivery.url)
                .header("content-type", "application/json")
                .header(eyeson_api::SIGNATURE_HEADER, &signature)
                .body(delivery.body.clone())
                .send()
                .await
            {
                Ok(response) => response.status().as_u16(),
                Err(error) => {
                    tracing::warn!(url = %delivery.url, %error, "webhook delivery failed");
                    0
                }
            };
            tracing::info!(url = %delivery.url, status, room_id = %delivery.room_id, "webhook delivered");
            sandbox
                .lock()
                .expect("sandbox lock")
                .delivered(&delivery, status, SystemTime::now());
        }
    });
    tx
}
