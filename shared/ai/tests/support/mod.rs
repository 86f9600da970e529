//! A local server speaking a provider's protocol for the wire tests: it records each request
//! (headers and JSON body) and plays the answers it was given, in order.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

/// What the server answers next, and what it was asked.
#[derive(Default)]
pub struct Server {
    answers: Mutex<VecDeque<Response>>,
    pub asked: Mutex<Vec<(HeaderMap, Value)>>,
}

async fn answer(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    server.asked.lock().expect("lock").push((headers, body));
    server
        .answers
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| status(500, serde_json::json!({})))
}

/// Serves `answers` on POST `paths`; returns `http://127.0.0.1:port` and the server.
pub async fn serve(paths: &[&str], answers: Vec<Response>) -> (String, Arc<Server>) {
    let server = Arc::new(Server {
        answers: Mutex::new(answers.into()),
        ..Server::default()
    });
    let mut app = Router::new();
    for path in paths {
        app = app.route(path, post(answer));
    }
    let app = app.with_state(Arc::clone(&server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, server)
}

/// A `text/event-stream` answer of `(event, data)` messages; an empty event name is left out.
pub fn events(messages: &[(&str, String)]) -> Response {
    let text: String = messages
        .iter()
        .map(|(event, data)| {
            if event.is_empty() {
                format!("data: {data}\n\n")
            } else {
                format!("event: {event}\ndata: {data}\n\n")
            }
        })
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(text))
        .expect("response")
}

/// A JSON answer with `code`.
pub fn status(code: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}
