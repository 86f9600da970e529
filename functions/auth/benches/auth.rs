//! Identity benchmark: `cargo bench -p jarvis-shared --bench auth`.
//!
//! What request security costs: hashing and verifying a password (argon2id, deliberately
//! slow), issuing and verifying an access token, and a whole request through every layer
//! (authentication reads the account and the session, the rate limit reads and writes its
//! counter) against the same request with no credentials, on embedded libSQL.

use std::hint::black_box;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jarvis_fn_auth::password::{self, Email, Password};
use jarvis_fn_auth::testing::TestApp;
use jarvis_identity::Identity;
use jarvis_identity::token;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn passwords(c: &mut Criterion) {
    let rt = runtime();
    let email = Email::parse("ada@example.com").expect("email");
    let hashed = rt
        .block_on(password::hash(
            Password::new_for("correct horse battery staple", &email).expect("policy"),
        ))
        .expect("hash");
    let mut group = c.benchmark_group("password");
    group.sample_size(20);
    group.bench_function("argon2id hash", |b| {
        b.iter(|| {
            let password =
                Password::new_for("correct horse battery staple", &email).expect("policy");
            rt.block_on(password::hash(password)).expect("hash")
        })
    });
    group.bench_function("argon2id verify", |b| {
        b.iter(|| {
            let attempt = Password::attempt("correct horse battery staple").expect("attempt");
            assert!(rt.block_on(password::verify(attempt, Some(hashed.clone()))));
        })
    });
    group.finish();
}

fn tokens_and_requests(c: &mut Criterion) {
    let rt = runtime();
    let routes = axum::Router::new().route(
        "/whoami",
        get(|identity: Identity| async move { identity.user_id }),
    );
    // A budget no benchmark reaches, so every request does the full rate-limit write.
    let app = rt.block_on(TestApp::with_env(
        routes,
        &[("JARVIS_RATE_LIMIT", "1000000")],
    ));
    let ada = rt.block_on(app.sign_up("ada@example.com"));
    let secrets = rt.block_on(app.state.secrets.current()).expect("secrets");
    let security = app.state.config.security.clone();

    let mut group = c.benchmark_group("access token");
    group.bench_function("issue", |b| {
        b.iter(|| {
            token::issue_access(
                &secrets,
                &security,
                &ada.user_id,
                "0123456789abcdef",
                1_800_000_000,
            )
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            rt.block_on(token::verify_access(
                black_box(&ada.access_token),
                app.state.secrets.as_ref(),
                &security,
            ))
            .expect("valid")
        })
    });
    group.finish();

    let request = |token: Option<&str>| {
        let mut request = Request::get("/whoami");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).expect("request")
    };
    let mut group = c.benchmark_group("request through every layer");
    group.bench_function("anonymous (401 before the handler)", |b| {
        b.iter(|| {
            let response = rt.block_on(app.respond(request(None)));
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        })
    });
    group.bench_function("signed in (token, account, session, rate limit)", |b| {
        b.iter(|| {
            let response = rt.block_on(app.respond(request(Some(&ada.access_token))));
            assert_eq!(response.status(), StatusCode::OK);
        })
    });
    group.finish();
}

criterion_group!(benches, passwords, tokens_and_requests);
criterion_main!(benches);
