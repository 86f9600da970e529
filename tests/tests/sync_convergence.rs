//! End to end: three `jarvis-local` processes, each peered with the other two, written to
//! concurrently, synced, and compared — including across a restart of one of them. The one
//! account that writes everywhere is registered on one node and signs in on the others once
//! sync has carried it there.

use std::path::PathBuf;

use jarvis_tests::{LocalNode, free_port};
use serde_json::{Value, json};

const TOKEN: &str = "convergence-test-peer-token";

struct Cluster {
    client: reqwest::Client,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    nodes: Vec<Option<LocalNode>>,
    tokens: Vec<String>,
    _root: tempfile::TempDir,
}

impl Cluster {
    fn start(size: usize) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let dirs = (0..size)
            .map(|i| root.path().join(format!("node{i}")))
            .collect();
        let mut cluster = Self {
            client: reqwest::Client::new(),
            ports,
            dirs,
            nodes: Vec::new(),
            tokens: Vec::new(),
            _root: root,
        };
        for i in 0..size {
            let node = cluster.launch(i);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn launch(&self, i: usize) -> LocalNode {
        let peers: Vec<String> = (0..self.ports.len())
            .filter(|j| *j != i)
            .map(|j| format!("http://127.0.0.1:{}", self.ports[j]))
            .collect();
        let replica = format!("node-{i}");
        let peers = peers.join(",");
        LocalNode::start_at(
            &format!("127.0.0.1:{}", self.ports[i]),
            &self.dirs[i],
            &[
                ("JARVIS_REPLICA_ID", &replica),
                ("JARVIS_SYNC_TOKEN", TOKEN),
                ("JARVIS_PEERS", &peers),
                // The test drives rounds itself through POST /sync/run.
                ("JARVIS_SYNC_INTERVAL", "3600"),
            ],
        )
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.client.request(method.clone(), self.url(i, path));
        if let Some(token) = self.tokens.get(i) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(
            status.is_success(),
            "{method} {path} on node {i}: {status} {body}"
        );
        body
    }

    async fn sync_round(&self) {
        for i in 0..self.ports.len() {
            let report: Value = self
                .client
                .post(self.url(i, "/sync/run"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("sync run")
                .json()
                .await
                .expect("report");
            for result in report["results"].as_array().expect("results") {
                assert_eq!(result["ok"], true, "node {i}: {result}");
                assert_eq!(result["rejected"], 0, "node {i}: {result}");
            }
        }
    }

    /// Registers one account on node 0, syncs, and signs it in on every node.
    async fn sign_in_everywhere(&mut self) {
        let account =
            json!({"email": "ada@example.com", "password": "correct horse battery staple"});
        self.send(
            0,
            reqwest::Method::POST,
            "/auth/register",
            Some(account.clone()),
        )
        .await;
        self.sync_round().await;
        let mut tokens = Vec::new();
        for i in 0..self.ports.len() {
            let pair = self
                .send(
                    i,
                    reqwest::Method::POST,
                    "/auth/login",
                    Some(account.clone()),
                )
                .await;
            tokens.push(pair["access_token"].as_str().expect("token").to_owned());
        }
        self.tokens = tokens;
    }

    async fn read_all(&self, path: &str) -> Vec<Value> {
        let mut values = Vec::new();
        for i in 0..self.ports.len() {
            values.push(self.send(i, reqwest::Method::GET, path, None).await);
        }
        values
    }

    fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        assert!(node.stop().success(), "node {i} stopped cleanly");
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i] = Some(self.launch(i));
    }
}

/// Every node writes the same four objects at once.
async fn concurrent_writes(cluster: &Cluster, round: u64) -> u64 {
    let mut increments = 0;
    let mut writes = Vec::new();
    for i in 0..cluster.ports.len() {
        let by = round * 10 + i as u64 + 1;
        increments += by;
        writes.push(async move {
            use reqwest::Method;
            cluster
                .send(
                    i,
                    Method::POST,
                    "/crdt/counters/visits/increment",
                    Some(json!({"by": by})),
                )
                .await;
            cluster
                .send(
                    i,
                    Method::POST,
                    "/crdt/sets/seen",
                    Some(json!({"add": [format!("r{round}-n{i}")]})),
                )
                .await;
            cluster
                .send(
                    i,
                    Method::PUT,
                    "/crdt/registers/theme",
                    Some(json!({"value": {"node": i, "round": round}})),
                )
                .await;
            cluster
                .send(
                    i,
                    Method::POST,
                    "/crdt/orsets/tags",
                    Some(json!({"add": [format!("t{round}-{i}")]})),
                )
                .await;
        });
    }
    futures_util::future::join_all(writes).await;
    increments
}

fn all_equal(values: &[Value], what: &str) {
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value, &values[0], "{what}: node {i} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_deployments_converge_and_a_restart_loses_nothing() {
    let mut cluster = Cluster::start(3);
    cluster.sign_in_everywhere().await;

    // Concurrent writes to the same objects on all three nodes.
    let mut total = concurrent_writes(&cluster, 0).await;

    // An element everyone has seen, then removed on one node while re-added on another.
    cluster
        .send(
            0,
            reqwest::Method::POST,
            "/crdt/orsets/tags",
            Some(json!({"add": ["contested"]})),
        )
        .await;
    cluster.sync_round().await;
    let (remove, add) = tokio::join!(
        cluster.send(
            1,
            reqwest::Method::POST,
            "/crdt/orsets/tags",
            Some(json!({"remove": ["contested"]}))
        ),
        cluster.send(
            2,
            reqwest::Method::POST,
            "/crdt/orsets/tags",
            Some(json!({"add": ["contested"]}))
        ),
    );
    assert!(
        !remove["elements"]
            .as_array()
            .expect("elements")
            .contains(&json!("contested"))
    );
    assert!(
        add["elements"]
            .as_array()
            .expect("elements")
            .contains(&json!("contested"))
    );

    cluster.sync_round().await;
    cluster.sync_round().await;

    let counters = cluster.read_all("/crdt/counters/visits").await;
    all_equal(&counters, "counter");
    assert_eq!(counters[0]["value"], total, "the sum of every increment");
    let sets = cluster.read_all("/crdt/sets/seen").await;
    all_equal(&sets, "set");
    assert_eq!(sets[0]["elements"].as_array().map(Vec::len), Some(3));
    all_equal(&cluster.read_all("/crdt/registers/theme").await, "register");
    let orsets = cluster.read_all("/crdt/orsets/tags").await;
    all_equal(&orsets, "or-set");
    assert!(
        orsets[0]["elements"]
            .as_array()
            .expect("elements")
            .contains(&json!("contested")),
        "a concurrent add and remove leave the element present: {}",
        orsets[0]
    );

    // Restart node 1 mid-way: the others write while it is down, it writes after it is back.
    cluster.stop(1);
    for i in [0, 2] {
        cluster
            .send(
                i,
                reqwest::Method::POST,
                "/crdt/counters/visits/increment",
                Some(json!({"by": 100})),
            )
            .await;
        total += 100;
    }
    cluster.restart(1);
    cluster
        .send(
            1,
            reqwest::Method::POST,
            "/crdt/counters/visits/increment",
            Some(json!({"by": 1000})),
        )
        .await;
    total += 1000;
    total += concurrent_writes(&cluster, 1).await;

    cluster.sync_round().await;
    cluster.sync_round().await;

    let counters = cluster.read_all("/crdt/counters/visits").await;
    all_equal(&counters, "counter after restart");
    assert_eq!(
        counters[0]["value"], total,
        "nothing lost across the restart"
    );
    let sets = cluster.read_all("/crdt/sets/seen").await;
    all_equal(&sets, "set after restart");
    assert_eq!(sets[0]["elements"].as_array().map(Vec::len), Some(6));
    all_equal(
        &cluster.read_all("/crdt/registers/theme").await,
        "register after restart",
    );
    all_equal(
        &cluster.read_all("/crdt/orsets/tags").await,
        "or-set after restart",
    );

    for i in 0..3 {
        cluster.stop(i);
    }
}
