use std::sync::{Arc, OnceLock};

use axum::http::{Method, Request, StatusCode};
use jarvis_fn_auth::testing::TestApp;
use serde_json::json;

use super::Ai;

/// The function's routes over a fresh app, with the AI service built from the app's own
/// configuration and secrets (as every host does).
async fn app(env: &[(&str, &str)]) -> TestApp {
    app_with(env, Vec::new()).await
}

/// [`app`], with providers the host built (as `bedrock` and `local` are).
async fn app_with(
    env: &[(&str, &str)],
    hosted: Vec<(String, Arc<dyn jarvis_ai::Provider>)>,
) -> TestApp {
    let slot: Arc<OnceLock<Arc<Ai>>> = Arc::new(OnceLock::new());
    let service = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> = super::api().into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<axum::body::Body>| {
            if let Some(ai) = service.get() {
                request.extensions_mut().insert(Arc::clone(ai));
            }
            request
        },
    ));
    let app = TestApp::signed_in_with_env(router, env).await;
    let ai = Ai::new(&app.state.config, Arc::clone(&app.state.secrets), hosted);
    assert!(slot.set(Arc::new(ai)).is_ok());
    app
}

fn ask(text: &str, max_tokens: u64) -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})
}

#[tokio::test]
async fn models_list_every_alias_with_the_state_of_each_target() {
    let app = app(&[]).await;
    let (status, body) = app.call(Method::GET, "/ai/models", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["default"], "scripted:echo",
        "no local models in this host"
    );
    let smart = &body["aliases"][0];
    assert_eq!(smart["alias"], "smart");
    assert_eq!(smart["targets"][0]["provider"], "local");
    assert_eq!(smart["targets"][0]["state"], "not_installed");
    assert_eq!(smart["targets"][1]["state"], "ready");
}

#[tokio::test]
async fn a_completion_answers_records_usage_and_cost_and_releases_the_rest() {
    let app = app(&[("JARVIS_AI_PRICES", "scripted:echo=2/10")]).await;
    let (status, body) = app
        .call(Method::POST, "/ai/complete", Some(ask("hello there", 50)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"], "You said: hello there");
    assert_eq!(body["model"], "scripted:echo");
    assert_eq!(body["alias"], "smart");
    let (input, output) = (
        body["usage"]["input_tokens"].as_u64().expect("input"),
        body["usage"]["output_tokens"].as_u64().expect("output"),
    );
    assert!(input > 0 && output > 0);
    assert_eq!(body["cost_micros"], json!(input * 2 + output * 10));

    let (status, usage) = app.call(Method::GET, "/ai/usage", None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["models"][0]["model"], "scripted:echo");
    assert_eq!(usage["models"][0]["input_tokens"], json!(input));
    assert_eq!(usage["cost_micros"], body["cost_micros"]);
    assert!(usage["day"]["limit"].is_null(), "no budget set: unlimited");
}

#[tokio::test]
async fn over_budget_is_a_429_quota_exceeded_with_its_reset_time_and_spends_nothing() {
    let app = app(&[]).await;
    let (status, _) = app
        .call(
            Method::PUT,
            "/admin/quotas/roles/admin",
            Some(json!({"tokens_per_day": 100, "tokens_per_month": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Worst case: the prompt's bytes plus framing plus max_tokens = 2 + 8 + 60 = 70.
    let (status, body) = app
        .call(Method::POST, "/ai/complete", Some(ask("hi", 60)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, usage) = app.call(Method::GET, "/ai/usage", None).await;
    let used = usage["day"]["used"].as_u64().expect("used");
    assert!(used < 70, "only what was used stays spent: {used}");

    let request = Request::builder()
        .method(Method::POST)
        .uri("/ai/complete")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(ask("hi", 95).to_string()))
        .expect("request");
    let response = app.respond(request).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=86_400).contains(&retry_after));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(
        body["error"]["resets_at"], usage["day"]["resets_at"],
        "the reset time is the end of the UTC day"
    );
    let (_, after) = app.call(Method::GET, "/ai/usage", None).await;
    assert_eq!(
        after["day"]["used"],
        json!(used),
        "a refusal spends nothing"
    );
    assert_eq!(after["day"]["limit"], 100);
}

#[tokio::test]
async fn a_users_own_budget_takes_the_place_of_their_roles() {
    let app = app(&[]).await;
    let member = app.sign_up("member@example.com").await;
    let token = Some(member.access_token.as_str());
    let put = |uri: String, body: serde_json::Value| {
        let app = &app;
        async move { app.call(Method::PUT, &uri, Some(body)).await }
    };
    let (status, _) = put(
        "/admin/quotas/roles/user".into(),
        json!({"tokens_per_day": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call_as(token, Method::POST, "/ai/complete", Some(ask("hi", 20)))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    let uri = format!("/admin/quotas/users/{}", member.user_id);
    let (status, body) = put(uri.clone(), json!({"tokens_per_day": 1000})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"tokens_per_day": 1000, "tokens_per_month": null})
    );
    let (status, _) = app.call(Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call_as(token, Method::POST, "/ai/complete", Some(ask("hi", 20)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _) = app
        .call_as(token, Method::PUT, &uri, Some(json!({"tokens_per_day": 1})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins set budgets");
}

#[tokio::test]
async fn bad_quota_requests_are_refused_naming_the_field_and_change_nothing() {
    let app = app(&[]).await;
    for (uri, body, field) in [
        ("/admin/quotas/roles/owner", json!({}), "role"),
        (
            "/admin/quotas/roles/user",
            json!({"tokens_per_day": 0}),
            "tokens_per_day",
        ),
        (
            "/admin/quotas/roles/user",
            json!({"tokens_per_month": 2_000_000_000_000_u64}),
            "tokens_per_month",
        ),
        ("/admin/quotas/users/not-an-id", json!({}), "id"),
    ] {
        let (status, answer) = app.call(Method::PUT, uri, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {answer}");
        assert_eq!(answer["error"]["field"], field);
    }
    let (status, _) = app
        .call(
            Method::PUT,
            "/admin/quotas/users/0193a1b200007000800000000000000f",
            Some(json!({"tokens_per_day": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such user");
    let (_, role) = app
        .call(Method::GET, "/admin/quotas/roles/user", None)
        .await;
    assert_eq!(
        role,
        json!({"tokens_per_day": null, "tokens_per_month": null})
    );
}

#[tokio::test]
async fn bad_completions_are_refused_naming_the_field() {
    let app = app(&[]).await;
    for (body, field) in [
        (json!({"messages": []}), "messages"),
        (ask("hi", 0), "max_tokens"),
        (ask("hi", 5000), "max_tokens"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 3.0}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a\u{0}b"}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "no such", "messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
    ] {
        let (status, answer) = app.call(Method::POST, "/ai/complete", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) = app
        .call(
            Method::POST,
            "/ai/complete",
            Some(json!({"messages": [{"role": "assistant", "content": "hi"}]})),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("messages")),
        "well-formed, but nothing to answer: {answer}"
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/ai/complete",
            Some(json!({"model": "huge", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an alias nobody configured");
    let (_, usage) = app.call(Method::GET, "/ai/usage", None).await;
    assert_eq!(usage["day"]["used"], 0, "nothing was spent");
}

#[tokio::test]
async fn embeddings_come_one_per_text_and_count_against_the_budget() {
    let app = app(&[]).await;
    let (status, _) = app
        .call(
            Method::PUT,
            "/admin/quotas/roles/admin",
            Some(json!({"tokens_per_month": 1000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::POST,
            "/ai/embeddings",
            Some(json!({"texts": ["the cat sat", "a dog ran"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "scripted:hash");
    assert_eq!(body["vectors"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["dimensions"], 64);
    let (_, usage) = app.call(Method::GET, "/ai/usage", None).await;
    assert_eq!(usage["month"]["used"], body["tokens"]);
    assert!(usage["day"].get("limit").is_none(), "{usage}");
    assert_eq!(
        usage["day"]["used"], body["tokens"],
        "without a budget, the tokens of the calls that ended"
    );
    assert_eq!(usage["models"][0]["model"], "scripted:hash");
}

#[tokio::test]
async fn routes_need_the_ai_scope_or_admin() {
    let app = app(&[]).await;
    for (method, uri) in [
        (Method::GET, "/ai/models"),
        (Method::GET, "/ai/usage"),
        (Method::GET, "/admin/quotas/roles/user"),
    ] {
        let (status, _) = app.call_as(Some("not-a-token"), method, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

/// A provider that is unreachable while `down` is set, and echoes otherwise.
struct Flaky {
    down: std::sync::atomic::AtomicBool,
    echo: jarvis_ai::scripted::Scripted,
}

#[async_trait::async_trait]
impl jarvis_ai::Provider for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn stream(
        &self,
        request: jarvis_ai::ChatRequest,
    ) -> Result<jarvis_ai::EventStream, jarvis_ai::ProviderError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(jarvis_ai::ProviderError::Unreachable {
                message: "connection refused".into(),
            });
        }
        self.echo.stream(request).await
    }
}

#[tokio::test]
async fn an_open_breaker_is_recorded_for_the_health_of_other_processes_until_it_closes() {
    use jarvis_ai::observed::ObservedBreakers;
    use jarvis_health::{HealthCheck, Status};
    use std::sync::atomic::Ordering;

    let flaky = Arc::new(Flaky {
        down: true.into(),
        echo: jarvis_ai::scripted::Scripted::default(),
    });
    let app = app_with(
        &[
            ("JARVIS_AI_MODELS", "smart=flaky:m1"),
            ("JARVIS_AI_BREAKER_THRESHOLD", "1"),
            ("JARVIS_AI_BREAKER_COOLDOWN_SECS", "1"),
        ],
        vec![(
            "flaky".into(),
            Arc::clone(&flaky) as Arc<dyn jarvis_ai::Provider>,
        )],
    )
    .await;
    // What the system function's `/health` reads on AWS: the store, not this process.
    let elsewhere = ObservedBreakers(Arc::clone(&app.state.store));
    assert_eq!(elsewhere.check().await.status, Status::Ok);

    let (status, body) = app
        .call(Method::POST, "/ai/complete", Some(ask("hello", 20)))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let finding = elsewhere.check().await;
    assert_eq!(finding.status, Status::Degraded);
    assert_eq!(
        finding.message.as_deref(),
        Some("circuit open: smart#flaky:m1")
    );
    let (_, models) = app.call(Method::GET, "/ai/models", None).await;
    assert_eq!(models["aliases"][0]["targets"][0]["state"], "degraded");

    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, body) = app
        .call(Method::POST, "/ai/complete", Some(ask("hello", 20)))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the probe after the cool-down: {body}"
    );
    let finding = elsewhere.check().await;
    assert_eq!(finding.status, Status::Ok, "{:?}", finding.message);
    assert_eq!(finding.details["breakers"][0]["target"], "smart#flaky:m1");
    assert_eq!(finding.details["breakers"][0]["state"], "closed");
}

/// A WAV file of `millis` of a 440 Hz tone: 16 kHz, 16-bit, mono.
fn wav(millis: u32) -> Vec<u8> {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate * millis / 1000)
        .map(|n| {
            let t = n as f32 / rate as f32;
            (f32::sin(2.0 * std::f32::consts::PI * 440.0 * t) * 8_000.0) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// What the local voice server was sent.
#[derive(Default)]
struct Heard {
    transcriptions: Vec<Vec<u8>>,
    speech: Vec<serde_json::Value>,
}

/// A local server speaking OpenAI's audio protocol: a transcription answers the number of
/// bytes of the file it got; speech answers a WAV file.
async fn voice_server() -> (String, Arc<std::sync::Mutex<Heard>>) {
    use axum::routing::post;
    let heard = Arc::new(std::sync::Mutex::new(Heard::default()));
    let (for_transcribe, for_speech) = (Arc::clone(&heard), Arc::clone(&heard));
    let router = axum::Router::new()
        .route(
            "/v1/audio/transcriptions",
            post(move |body: axum::body::Bytes| {
                let heard = Arc::clone(&for_transcribe);
                async move {
                    heard
                        .lock()
                        .expect("heard")
                        .transcriptions
                        .push(body.to_vec());
                    axum::Json(json!({"text": "the tone of a tuning fork"}))
                }
            }),
        )
        .route(
            "/v1/audio/speech",
            post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let heard = Arc::clone(&for_speech);
                async move {
                    heard.lock().expect("heard").speech.push(body);
                    ([("content-type", "audio/wav")], wav(100))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, heard)
}

async fn voice_app(url: &str) -> TestApp {
    let servers = format!("voice={url}");
    app(&[
        ("JARVIS_AI_SERVERS", servers.as_str()),
        (
            "JARVIS_AI_MODELS",
            "smart=scripted:echo;transcribe=voice:whisper-1;speech=voice:tts-1",
        ),
    ])
    .await
}

fn raw(uri: &str, content_type: &str, body: Vec<u8>) -> Request<axum::body::Body> {
    Request::post(uri)
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
        .expect("request")
}

#[tokio::test]
async fn speech_is_transcribed_by_an_openai_compatible_server_and_counted() {
    let (url, heard) = voice_server().await;
    let app = voice_app(&url).await;
    let sound = wav(250);
    let (status, body) = app
        .send(raw(
            "/ai/transcriptions?language=en",
            "audio/wav",
            sound.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"], "the tone of a tuning fork");
    assert_eq!(
        body["model"], "openai:whisper-1",
        "servers speak the OpenAI protocol"
    );
    let sent = heard.lock().expect("heard").transcriptions[0].clone();
    let form = String::from_utf8_lossy(&sent);
    assert!(
        form.contains("name=\"model\"") && form.contains("whisper-1"),
        "{form}"
    );
    assert!(form.contains("name=\"language\""), "{form}");
    assert!(
        sent.windows(sound.len()).any(|w| w == sound.as_slice()),
        "the file is sent whole"
    );
    let (_, usage) = app.call(Method::GET, "/ai/usage", None).await;
    assert_eq!(usage["models"][0]["model"], "openai:whisper-1", "{usage}");
}

#[tokio::test]
async fn sound_is_recognised_by_its_content_not_its_name() {
    let (url, heard) = voice_server().await;
    let app = voice_app(&url).await;
    let (status, _) = app
        .send(raw("/ai/transcriptions", "audio/mpeg", wav(50)))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a WAV is not MP3");
    let (status, _) = app
        .send(raw(
            "/ai/transcriptions",
            "audio/wav",
            b"not a riff file".to_vec(),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .send(raw("/ai/transcriptions", "text/plain", wav(50)))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        heard.lock().expect("heard").transcriptions.is_empty(),
        "nothing reached the model"
    );
}

#[tokio::test]
async fn text_is_spoken_in_the_format_asked_for() {
    let (url, heard) = voice_server().await;
    let app = voice_app(&url).await;
    let response = app
        .respond(
            Request::post("/ai/speech")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"input": "Good morning", "voice": "nova", "format": "wav"}).to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.headers()["x-jarvis-model"], "openai:tts-1");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(bytes.as_ref(), wav(100).as_slice());
    let sent = heard.lock().expect("heard").speech[0].clone();
    assert_eq!(
        sent,
        json!({"model": "tts-1", "input": "Good morning", "voice": "nova", "response_format": "wav"})
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/ai/speech",
            Some(json!({"input": "hi", "format": "midi"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_alias_whose_models_do_not_speak_is_a_422() {
    let app = app(&[]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/ai/speech",
            Some(json!({"input": "hello", "model": "smart"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}
