//! Webhook registration at start: GET first, POST only when it differs.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const HOOK: &str = "https://hard-limit.example.com/webhook";

async fn wait_for_gets(app: &TestApp, n: usize) {
    wait_until("GET /webhooks", Duration::from_secs(10), || async {
        app.fake.calls("GET", "/webhooks").len() >= n
    })
    .await;
}

#[tokio::test]
async fn registers_once_then_leaves_an_identical_registration_alone() {
    let app = spawn_app_with(|c| c.webhook_url = Some(HOOK.parse().unwrap())).await;
    wait_until("POST /webhooks", Duration::from_secs(10), || async {
        !app.fake.calls("POST", "/webhooks").is_empty()
    })
    .await;
    let posts = app.fake.calls("POST", "/webhooks");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].authorization.as_deref(), Some(KEY));
    assert_eq!(
        posts[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        posts[0].form,
        [
            ("url".to_owned(), HOOK.to_owned()),
            ("types".to_owned(), "room_update".to_owned())
        ]
    );
    assert_eq!(
        app.fake.calls("GET", "/webhooks")[0]
            .authorization
            .as_deref(),
        Some(KEY)
    );

    // A second start (a restart or another replica) finds it registered.
    let (fake, db, dir) = app.stop().await;
    let app = spawn_on(fake, db, dir, |c| {
        c.webhook_url = Some(HOOK.parse().unwrap())
    })
    .await;
    wait_for_gets(&app, 2).await;
    // The reconciler's first GET /rooms comes after registration.
    wait_until(
        "GET /rooms after registration",
        Duration::from_secs(10),
        || async { app.fake.calls("GET", "/rooms").len() >= 2 },
    )
    .await;
    assert_eq!(app.fake.calls("POST", "/webhooks").len(), 1);
    let id = app.fake.webhook().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        app.fake
            .calls("DELETE", &format!("/webhooks/{id}"))
            .is_empty(),
        "never unregisters"
    );
}

#[tokio::test]
async fn a_different_registration_is_replaced() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(
        json!({"id": "old", "url": HOOK, "types": "room_update,recording_update"}),
    ));
    let app = spawn_app_on(fake, |c| c.webhook_url = Some(HOOK.parse().unwrap())).await;
    wait_until("POST /webhooks", Duration::from_secs(10), || async {
        !app.fake.calls("POST", "/webhooks").is_empty()
    })
    .await;
    let hook = app.fake.webhook().unwrap();
    assert_eq!(hook["url"], HOOK);
    assert_eq!(hook["types"], json!(["room_update"]));
}

#[tokio::test]
async fn an_identical_registration_with_string_types_is_kept() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(
        json!({"id": "keep", "url": HOOK, "types": "room_update"}),
    ));
    let app = spawn_app_on(fake, |c| c.webhook_url = Some(HOOK.parse().unwrap())).await;
    wait_until(
        "GET /rooms after registration",
        Duration::from_secs(10),
        || async { !app.fake.calls("GET", "/rooms").is_empty() },
    )
    .await;
    // One GET at start (is another URL registered?), one to register.
    assert_eq!(app.fake.calls("GET", "/webhooks").len(), 2);
    assert!(app.fake.calls("POST", "/webhooks").is_empty());
}

#[tokio::test]
async fn a_registration_without_the_trailing_slash_of_a_bare_host_is_kept() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(
        json!({"id": "bare", "url": "https://hooks.example.com", "types": ["room_update"]}),
    ));
    let client = eyeson_hard_limit::eyeson::EyesonClient::new(
        fake.url().parse().unwrap(),
        KEY.parse().unwrap(),
    )
    .unwrap();
    let target: reqwest::Url = "https://hooks.example.com".parse().unwrap();
    assert_eq!(target.as_str(), "https://hooks.example.com/");
    assert!(!eyeson_hard_limit::registration::ensure(&client, &target)
        .await
        .unwrap());
    assert!(fake.calls("POST", "/webhooks").is_empty());
}
