//! The local WebSocket gateway: what API Gateway's WebSocket API does, so the realtime
//! function runs here as it does behind API Gateway.
//!
//! - `GET /ws` upgrades a connection. Before the handshake completes the gateway runs the
//!   function's `$connect` with an AWS-shaped connection id; any answer but 200 refuses the
//!   handshake with that status (and no `$disconnect` follows).
//! - Each message is routed by its `action` (API Gateway's `$request.body.action`) to the
//!   route of that key, else `$default`, and handled in its own task, as API Gateway invokes
//!   the function once per message.
//! - A message over 128 KiB closes the connection with 1009; one with no client message for
//!   the idle timeout (10 minutes) or open for the maximum lifetime (2 hours) is closed with
//!   1001. `$disconnect` runs once a connection is closed, whichever side closed it.
//! - The management API is on the same server, for loopback callers:
//!   `POST /@connections/{id}` sends its body as one text message (200; 410 Gone when the
//!   connection is not open; 413 over 128 KiB), `GET` answers `{connectedAt, identity:
//!   {sourceIp, userAgent}, lastActiveAt}`, `DELETE` closes the connection (204), after which
//!   `$disconnect` runs. Errors carry `x-amzn-ErrorType` as API Gateway's do, so an AWS SDK
//!   client pointed here behaves as against AWS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body as EventBody;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use jarvis_fn_realtime::{Realtime, select_route};
use jarvis_realtime::{Connections, Delivery, MAX_MESSAGE_BYTES};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

/// The stage name events carry (API Gateway's `requestContext.stage`).
pub const STAGE: &str = "local";

/// The read buffer of one connection.
const READ_BUFFER: usize = 4 * 1024;

/// Messages queued for one connection before a poster waits for the client to read.
const QUEUE: usize = 256;

/// What the gateway sends down a socket.
#[derive(Debug)]
enum Outgoing {
    Text(String),
    Close(u16, &'static str),
}

#[derive(Debug)]
struct Socket {
    tx: mpsc::Sender<Outgoing>,
    connected_at_ms: i64,
    last_active_ms: AtomicI64,
    source_ip: String,
    user_agent: String,
}

/// The open sockets, by connection id: the local [`Connections`].
#[derive(Debug, Default)]
pub struct Sockets {
    open: Mutex<HashMap<String, Arc<Socket>>>,
}

impl Sockets {
    fn get(&self, id: &str) -> Option<Arc<Socket>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    fn insert(&self, id: String, socket: Arc<Socket>) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, socket);
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }
}

#[async_trait]
impl Connections for Sockets {
    async fn post(&self, connection: &str, data: &str) -> Result<(), Delivery> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(Delivery::TooLarge);
        }
        let socket = self.get(connection).ok_or(Delivery::Gone)?;
        socket
            .tx
            .send(Outgoing::Text(data.to_owned()))
            .await
            .map_err(|_| Delivery::Gone)
    }

    async fn close(&self, connection: &str) -> Result<(), Delivery> {
        let socket = self.get(connection).ok_or(Delivery::Gone)?;
        socket
            .tx
            .send(Outgoing::Close(1000, "closed by the server"))
            .await
            .map_err(|_| Delivery::Gone)
    }
}

/// How long connections may live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Closed after this long without a message from the client.
    pub idle: Duration,
    /// Closed this long after opening.
    pub max: Duration,
}

/// The WebSocket gateway: the function it runs and the sockets it holds.
pub struct WsGateway {
    realtime: Arc<Realtime>,
    sockets: Arc<Sockets>,
    lifetimes: Lifetimes,
}

/// A connection id shaped as API Gateway's: 16 characters of base64 (URL-safe here, so it
/// needs no escaping in `/@connections/{id}`), ending in `=`.
pub fn connection_id() -> String {
    let bytes: [u8; 11] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The context every event of a connection carries.
struct Context<'a> {
    id: &'a str,
    connected_at_ms: i64,
    source_ip: &'a str,
    user_agent: &'a str,
    domain: &'a str,
}

fn event(context: &Context<'_>, route: &str, event_type: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    let request = &mut event.request_context;
    request.route_key = Some(route.to_owned());
    request.event_type = Some(event_type.to_owned());
    request.message_direction = Some("IN".to_owned());
    request.connection_id = Some(context.id.to_owned());
    request.connected_at = context.connected_at_ms;
    request.request_time_epoch = now_ms();
    request.domain_name = Some(context.domain.to_owned());
    request.stage = Some(STAGE.to_owned());
    request.apiid = Some("local".to_owned());
    request.request_id = Some(uuid_like());
    request.identity.source_ip = Some(context.source_ip.to_owned());
    request.identity.user_agent = Some(context.user_agent.to_owned());
    event
}

fn uuid_like() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The function's answer to a handshake, as the HTTP response that refuses it.
fn refused(response: ApiGatewayProxyResponse) -> Response {
    let status = u16::try_from(response.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match response.body {
        Some(EventBody::Text(text)) => text,
        Some(EventBody::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl WsGateway {
    /// A gateway running `realtime`, holding its sockets in `sockets`.
    pub fn new(realtime: Arc<Realtime>, sockets: Arc<Sockets>, lifetimes: Lifetimes) -> Self {
        Self {
            realtime,
            sockets,
            lifetimes,
        }
    }

    /// The WebSocket endpoint and the management API.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route(WS_PATH, get(upgrade))
            .route(
                "/@connections/{id}",
                get(connection_info)
                    .post(post_to_connection)
                    .delete(delete_connection),
            )
            .with_state(self)
    }

    fn connections(&self) -> Arc<dyn Connections> {
        Arc::clone(&self.sockets) as Arc<dyn Connections>
    }

    async fn disconnect(&self, context: &Context<'_>, code: u16, reason: &str) {
        let mut event = event(context, "$disconnect", "DISCONNECT");
        event.request_context.disconnect_status_code = Some(i64::from(code));
        event.request_context.disconnect_reason = Some(reason.to_owned());
        self.realtime.handle(event, self.connections()).await;
    }

    /// Serves one upgraded connection until either side closes it, then runs
    /// `$disconnect`.
    async fn serve(
        self: Arc<Self>,
        mut ws: WebSocket,
        socket: Arc<Socket>,
        id: String,
        domain: String,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let opened = Instant::now();
        let max = opened + self.lifetimes.max;
        let mut idle = opened + self.lifetimes.idle;
        let (code, reason): (u16, &str) = loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outgoing::Text(text)) => {
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break (1006, "the connection was lost");
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => {
                        let _ = ws.send(close(code, reason)).await;
                        break (code, reason);
                    }
                    None => break (1011, "the gateway stopped"),
                },
                incoming = ws.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        idle = Instant::now() + self.lifetimes.idle;
                        socket.last_active_ms.store(now_ms(), Ordering::Relaxed);
                        self.dispatch(&socket, &id, &domain, text.as_str().to_owned());
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        idle = Instant::now() + self.lifetimes.idle;
                        socket.last_active_ms.store(now_ms(), Ordering::Relaxed);
                        let text = String::from_utf8(bytes.to_vec()).unwrap_or_default();
                        self.dispatch(&socket, &id, &domain, text);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        break (frame.map_or(1005, |f| f.code), "the client closed the connection");
                    }
                    None => break (1006, "the connection was lost"),
                    Some(Err(err)) => {
                        if too_big(&err) {
                            let _ = ws.send(close(1009, "Message too big")).await;
                            break (1009, "Message too big");
                        }
                        break (1006, "the connection was lost");
                    }
                },
                () = tokio::time::sleep_until(idle) => {
                    let _ = ws.send(close(1001, "Going away")).await;
                    break (1001, "the connection was idle too long");
                }
                () = tokio::time::sleep_until(max) => {
                    let _ = ws.send(close(1001, "Going away")).await;
                    break (1001, "the connection reached its maximum lifetime");
                }
            }
        };
        self.sockets.remove(&id);
        drop(ws);
        let context = Context {
            id: &id,
            connected_at_ms: socket.connected_at_ms,
            source_ip: &socket.source_ip,
            user_agent: &socket.user_agent,
            domain: &domain,
        };
        self.disconnect(&context, code, reason).await;
    }

    /// Runs the route a message selects, in its own task.
    fn dispatch(self: &Arc<Self>, socket: &Socket, id: &str, domain: &str, body: String) {
        let context = Context {
            id,
            connected_at_ms: socket.connected_at_ms,
            source_ip: &socket.source_ip,
            user_agent: &socket.user_agent,
            domain,
        };
        let mut event = event(&context, select_route(&body), "MESSAGE");
        event.body = Some(body);
        let gateway = Arc::clone(self);
        tokio::spawn(async move {
            gateway.realtime.handle(event, gateway.connections()).await;
        });
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Whether a read failed because the message is larger than the gateway accepts.
fn too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(tungstenite) = cause.downcast_ref::<tungstenite::Error>() {
            return matches!(tungstenite, tungstenite::Error::Capacity(_));
        }
        source = cause.source();
    }
    false
}

async fn upgrade(
    State(gateway): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let id = connection_id();
    let domain = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let source_ip = peer.ip().to_canonical().to_string();
    let connected_at_ms = now_ms();
    let context = Context {
        id: &id,
        connected_at_ms,
        source_ip: &source_ip,
        user_agent: &user_agent,
        domain: &domain,
    };
    let mut connect = event(&context, "$connect", "CONNECT");
    connect.query_string_parameters = query.into();
    connect.headers = headers;
    let answer = gateway
        .realtime
        .handle(connect, gateway.connections())
        .await;
    if answer.status_code != 200 {
        return refused(answer);
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let socket = Arc::new(Socket {
        tx,
        connected_at_ms,
        last_active_ms: AtomicI64::new(connected_at_ms),
        source_ip,
        user_agent,
    });
    gateway.sockets.insert(id.clone(), Arc::clone(&socket));
    let failed = {
        let (gateway, socket, id, domain) = (
            Arc::clone(&gateway),
            Arc::clone(&socket),
            id.clone(),
            domain.clone(),
        );
        move |err: axum::Error| {
            tracing::debug!(error = %err, "a WebSocket upgrade failed");
            gateway.sockets.remove(&id);
            tokio::spawn(async move {
                let context = Context {
                    id: &id,
                    connected_at_ms: socket.connected_at_ms,
                    source_ip: &socket.source_ip,
                    user_agent: &socket.user_agent,
                    domain: &domain,
                };
                gateway
                    .disconnect(&context, 1006, "the upgrade failed")
                    .await;
            });
        }
    };
    // Small buffers: an idle connection holds a 4 KiB read buffer, not tungstenite's 128 KiB
    // default, and each message is written out at once.
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_failed_upgrade(failed)
        .on_upgrade(move |ws| gateway.serve(ws, socket, id, domain, rx))
}

/// API Gateway's error answer: the status, `x-amzn-ErrorType` and `{"message"}`.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", kind),
            (header::CONTENT_TYPE.as_str(), "application/json"),
        ],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn gone() -> Response {
    aws_error(
        StatusCode::GONE,
        "GoneException",
        "the connection is not open",
    )
}

/// The management API answers loopback callers only, as API Gateway's answers only
/// callers allowed `execute-api:ManageConnections`; a request a proxy relayed (it says so in
/// `Forwarded` or `X-Forwarded-For`) comes from elsewhere, whatever address it arrives from.
fn outsider(peer: &SocketAddr, headers: &HeaderMap) -> Option<Response> {
    let relayed =
        headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
    (relayed || !peer.ip().to_canonical().is_loopback()).then(|| {
        aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "the management API answers loopback callers only",
        )
    })
}

fn rfc3339(ms: i64) -> String {
    jarvis_http::time::rfc3339_ms(u64::try_from(ms).unwrap_or(0))
}

async fn connection_info(
    State(gateway): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = outsider(&peer, &headers) {
        return refusal;
    }
    let Some(socket) = gateway.sockets.get(&id) else {
        return gone();
    };
    axum::Json(serde_json::json!({
        "connectedAt": rfc3339(socket.connected_at_ms),
        "identity": { "sourceIp": socket.source_ip, "userAgent": socket.user_agent },
        "lastActiveAt": rfc3339(socket.last_active_ms.load(Ordering::Relaxed)),
    }))
    .into_response()
}

async fn post_to_connection(
    State(gateway): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = outsider(&peer, &headers) {
        return refusal;
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "the data is not UTF-8 text",
        );
    };
    match gateway.sockets.post(&id, &text).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(Delivery::Gone) => gone(),
        Err(Delivery::TooLarge) => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "the data is larger than 128 KiB",
        ),
        Err(Delivery::Failed(message)) => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &message,
        ),
    }
}

async fn delete_connection(
    State(gateway): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = outsider(&peer, &headers) {
        return refusal;
    }
    match gateway.sockets.close(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => gone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_shaped_as_api_gateways() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let id = connection_id();
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(
                id.trim_end_matches('=')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
            assert!(seen.insert(id), "ids are unique");
        }
    }
}
