//! Fuzzes the sandbox's request handling: arbitrary requests (method,
//! path and query, `Authorization`, `Content-Type`, body) through its REST
//! router, in-process, up to four in a row on one fresh sandbox so a
//! created room's keys can be hit too. No request may panic a handler or
//! get a 5xx: every bad input is a 4xx.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const KEY: &str = "fuzz-sandbox-key";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// One request from `chunk`: byte 0 picks the method, byte 1 the
/// Authorization and Content-Type, then the path up to the first
/// newline, the rest is the body.
fn request(chunk: &[u8]) -> Option<Request<Body>> {
    let (&m, rest) = chunk.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let method = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
        Method::PATCH,
    ][usize::from(m) % 6]
        .clone();
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (path, body) = rest.split_at(split);
    let path = String::from_utf8_lossy(path);
    let uri = format!("/{}", path.trim_start_matches('/'));
    let mut builder = Request::builder().method(method).uri(uri.as_str());
    match flags % 3 {
        0 => builder = builder.header("authorization", KEY),
        1 => builder = builder.header("authorization", "wrong"),
        _ => {}
    }
    match (flags / 3) % 3 {
        0 => builder = builder.header("content-type", "application/x-www-form-urlencoded"),
        1 => builder = builder.header("content-type", "application/json"),
        _ => {}
    }
    builder
        .body(Body::from(body.get(1..).unwrap_or_default().to_vec()))
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let router = eyeson_sandbox::router_for_fuzzing(KEY);
    runtime().block_on(async {
        for chunk in data.split(|&b| b == 0).take(4) {
            let Some(req) = request(chunk) else { continue };
            let answer = router.clone().oneshot(req).await.expect("infallible");
            assert!(
                !answer.status().is_server_error(),
                "{} for {chunk:?}",
                answer.status()
            );
        }
    });
});
