//! An HTTP client of a running `jarvis-local`, signed in as a fresh account.

use serde_json::{Value, json};

use crate::LocalNode;

/// The password [`Client::sign_up`] registers with.
pub const PASSWORD: &str = "a long enough password 1";

/// A signed-in account's client of a node.
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The account's access token.
    pub token: String,
}

impl Client {
    /// Registers `ada@example.com` on `node` (the node's admin when it is the first
    /// account) and signs in.
    pub async fn sign_up(node: &LocalNode) -> Self {
        let http = reqwest::Client::new();
        let account = json!({"email": "ada@example.com", "password": PASSWORD});
        let registered = http
            .post(node.url("/auth/register"))
            .json(&account)
            .send()
            .await
            .expect("register");
        assert_eq!(registered.status(), 201);
        let tokens: Value = http
            .post(node.url("/auth/login"))
            .json(&account)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("tokens");
        Self {
            http,
            base: node.base_url().to_owned(),
            token: tokens["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// The same account on a restarted node.
    pub fn at(&mut self, node: &LocalNode) {
        node.base_url().clone_into(&mut self.base);
    }

    /// Sends `method path` with a JSON `body`: the status and the JSON answer (`null` when
    /// there is none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET path`, which must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}
