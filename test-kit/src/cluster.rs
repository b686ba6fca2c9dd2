//! A real 3-node OpenBao raft cluster on loopback, for the failover tests.
//!
//! `Cluster::start()` writes one raft config per node (distinct API and cluster ports, a data dir
//! each, `performance_multiplier = 1` so that an election takes a second or two instead of ~11 s),
//! starts `bao server -config` three times, initialises node 1 with one key share, unseals it,
//! joins nodes 2 and 3 to it and unseals them, lowers autopilot's server stabilisation time so
//! the joined nodes become voters within seconds (a cluster of non-voters cannot elect), and
//! waits until node 1 is active and all three vote. Nodes are stopped by PID on drop; a test
//! kills one with SIGKILL ([`Cluster::kill`]).
//!
//! ```ignore
//! let mut cluster = Cluster::start();
//! let leader = cluster.bao(cluster.leader());    // the API helpers, on the active node
//! cluster.kill(cluster.leader());
//! let new = cluster.wait_for_new_leader(Duration::from_secs(20));
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::bao::{Bao, bao_binary};
use super::proc::{spawn_tied_to_thread, stop_child};
use super::{free_port, tail_of_file, wait_for};

/// How long the cluster may take to form (processes up, init, joins, autopilot promotion).
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// One node.
struct Node {
    child: Option<Child>,
    api: String,
    log: PathBuf,
}

/// Three raft nodes; node 0 is the first leader.
pub struct Cluster {
    nodes: Vec<Node>,
    root_token: String,
    http: reqwest::blocking::Client,
    // Last, so the data dirs outlive the processes.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts, initialises, unseals and joins three nodes; returns once node 0 is active and all
    /// three are voters.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("leasehold-raft")
            .tempdir()
            .expect("temp dir");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let bin = bao_binary();
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let (api_port, cluster_port) = (free_port(), free_port());
            let node_dir = dir.path().join(format!("node{i}"));
            let data = node_dir.join("data");
            std::fs::create_dir_all(&data).expect("mkdir");
            let config = node_dir.join("config.hcl");
            std::fs::write(
                &config,
                format!(
                    "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"node{i}\"\n  performance_multiplier = 1\n}}\n\
                     listener \"tcp\" {{\n  address = \"127.0.0.1:{api_port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
                     api_addr = \"http://127.0.0.1:{api_port}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n\
                     disable_mlock = true\n",
                    data = data.display()
                ),
            )
            .expect("write config");
            let log = node_dir.join("server.log");
            let out = std::fs::File::create(&log).expect("log");
            let mut cmd = Command::new(&bin);
            cmd.arg("server")
                .arg(format!("-config={}", config.display()))
                .current_dir(&node_dir)
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup log"))
                .stderr(out);
            let child = spawn_tied_to_thread(&mut cmd)
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            nodes.push(Node {
                child: Some(child),
                api: format!("http://127.0.0.1:{api_port}"),
                log,
            });
        }
        let mut cluster = Cluster {
            nodes,
            root_token: String::new(),
            http,
            dir,
        };
        cluster.form();
        cluster
    }

    fn form(&mut self) {
        for i in 0..3 {
            wait_for("a node listening", FORM_TIMEOUT, || {
                self.health(i).map(|_| ())
            });
        }
        let (status, init) = self.call(
            0,
            None,
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        assert_eq!(status, 200, "init: {init}\n{}", self.logs());
        let key = init["keys_base64"][0]
            .as_str()
            .expect("unseal key")
            .to_owned();
        self.root_token = init["root_token"].as_str().expect("root token").to_owned();
        self.unseal(0, &key);
        wait_for("node 1 active", FORM_TIMEOUT, || {
            self.health(0)
                .filter(|h| h["standby"] == json!(false) && h["sealed"] == json!(false))
        });
        // Joined nodes stay non-voters until autopilot trusts them (10 s by default).
        self.root(
            0,
            "POST",
            "sys/storage/raft/autopilot/configuration",
            json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false}),
        );
        let leader = self.nodes[0].api.clone();
        for i in 1..3 {
            let (status, body) = self.call(
                i,
                None,
                "POST",
                "sys/storage/raft/join",
                Some(json!({"leader_api_addr": leader})),
            );
            assert_eq!(status, 200, "join node {}: {body}\n{}", i + 1, self.logs());
            self.unseal(i, &key);
        }
        wait_for("three voters", FORM_TIMEOUT, || {
            let (status, body) = self.call(
                0,
                Some(&self.root_token),
                "GET",
                "sys/storage/raft/autopilot/state",
                None,
            );
            let voters = body["data"]["voters"].as_array().map_or(0, Vec::len);
            (status == 200 && voters == 3 && body["data"]["healthy"] == json!(true)).then_some(())
        });
        for i in 1..3 {
            wait_for("an unsealed standby", FORM_TIMEOUT, || {
                self.health(i)
                    .filter(|h| h["standby"] == json!(true) && h["sealed"] == json!(false))
            });
        }
    }

    fn unseal(&self, node: usize, key: &str) {
        // A joining node may need a moment to fetch the keyring from the leader.
        wait_for("unsealed", FORM_TIMEOUT, || {
            let (status, body) =
                self.call(node, None, "PUT", "sys/unseal", Some(json!({"key": key})));
            (status == 200 && body["sealed"] == json!(false)).then_some(())
        });
    }

    fn root(&self, node: usize, method: &str, path: &str, body: Value) -> Value {
        let (status, resp) = self.call(node, Some(&self.root_token), method, path, Some(body));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {resp}"
        );
        resp
    }

    fn call(
        &self,
        node: usize,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.nodes[node].api));
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        match req.send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// `sys/health` of a node (standby and sealed answer too), `None` when it does not answer.
    fn health(&self, node: usize) -> Option<Value> {
        let (status, body) = self.call(
            node,
            None,
            "GET",
            "sys/health?standbyok=true&sealedcode=200&uninitcode=200",
            None,
        );
        (status == 200).then_some(body)
    }

    /// The API addresses of the nodes, node 1 first.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.api.clone()).collect()
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The live node that says it is active, if any.
    pub fn active(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i].child.is_some()
                && self
                    .health(i)
                    .is_some_and(|h| h["standby"] == json!(false) && h["sealed"] == json!(false))
        })
    }

    /// The active node (waits for one).
    pub fn leader(&self) -> usize {
        wait_for("an active node", FORM_TIMEOUT, || self.active())
    }

    /// The API helpers of [`Bao`] on one node (standbys forward to the active node).
    pub fn bao(&self, node: usize) -> Bao {
        Bao::attach(&self.nodes[node].api, &self.root_token)
    }

    /// A live node's PID.
    pub fn pid(&self, node: usize) -> u32 {
        self.nodes[node].child.as_ref().expect("a live node").id()
    }

    /// SIGKILLs a node (no step-down, no goodbye to its peers).
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Waits until a live node is active; returns it and how long that took.
    pub fn wait_for_new_leader(&self, timeout: Duration) -> (usize, Duration) {
        let started = Instant::now();
        let node = wait_for("a new active node", timeout, || self.active());
        (node, started.elapsed())
    }

    /// Every node's log tail, for assertion messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, tail_of_file(&n.log, 3000)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The temp dir holding the nodes' configs, data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(10));
            }
        }
    }
}
