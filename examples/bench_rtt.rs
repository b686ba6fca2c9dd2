//! `scripts/bench-rtt.sh`: a runner far from its Vault. prepare and cleanup over TLS through a
//! loopback proxy that delays every chunk by 10 ms each way (20 ms round trip), for 10 KV
//! secrets over 3 paths plus 5 leases (PKI certificates with `generate_lease`), against
//! gitlab-runner's per-secret pattern (one JWT login and one request per secret, each a new TLS
//! connection, emulated with curl) over the same link, in the same run. Prints a Markdown table.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use leasehold_test_kit::World;
use leasehold_test_kit::attempt::{Attempt, BENCH_POLICY, median, plant_bench_secrets};
use leasehold_test_kit::pki::Pki;
use leasehold_test_kit::world::ROLE;

const RUNS: usize = 5;
/// Added to every chunk in each direction: 20 ms round trip.
const ONE_WAY: Duration = Duration::from_millis(10);

fn main() {
    let world = World::builder(leasehold_test_kit::leasehold_bin())
        .policy(&BENCH_POLICY)
        .tls()
        .start();
    let (listeners, pki) = (&world.tls().listeners, &world.tls().pki);
    plant_bench_secrets(&world.bao, 3, 4, |p, f| format!("value-{p}-{f}"));

    let upstream = listeners.tls.trim_start_matches("https://").to_owned();
    let proxy = delay_proxy(upstream.clone());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| link | leasehold prepare | leasehold cleanup | runner pattern (curl, per secret) | ratio (runner / leasehold prepare) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (name, addr) in [("loopback TLS", upstream), ("TLS + 20 ms RTT", proxy)] {
        let url = format!("https://{addr}");
        world.write_config_with_vault(&url, &format!("ca_file = \"{}\"\n", pki.ca().display()), "");
        let job = world.job().secrets_yaml(&declarations());
        let (mut prepare, mut cleanup) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let attempt = Attempt::new(&world, &job);
            prepare.push(attempt.stage(&world, &["prepare"]));
            cleanup.push(attempt.stage(&world, &["cleanup"]));
        }
        let jwt = world.issuer.mint(json!({}));
        let mut runner = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            for i in 0..10 {
                let token = curl_login(&url, pki, &jwt);
                curl(
                    &url,
                    pki,
                    &token,
                    "GET",
                    &format!("kv/data/bench/p{}", i % 3),
                    None,
                );
            }
            for i in 0..5 {
                let token = curl_login(&url, pki, &jwt);
                let body = json!({"common_name": format!("c{i}.ci.example.com"), "ttl": "10m"});
                curl(&url, pki, &token, "POST", "pki/issue/ci", Some(&body));
            }
            runner.push(start.elapsed());
        }
        let (prepare, cleanup, runner) = (median(prepare), median(cleanup), median(runner));
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {:.1}× |",
            ms(prepare),
            ms(cleanup),
            ms(runner),
            runner.as_secs_f64() / prepare.as_secs_f64()
        );
    }
    print!("{md}");
}

/// 10 KV secrets over 3 paths and 5 certificates, each its own request and lease.
fn declarations() -> String {
    let mut yaml = String::new();
    for i in 0..10 {
        let _ = writeln!(
            yaml,
            "S{i}:\n  vault: bench/p{}/f{}@kv\n  file: false",
            i % 3,
            i / 3
        );
    }
    for i in 0..5 {
        let _ = writeln!(
            yaml,
            "C{i}:\n  vault:\n    engine: {{name: generic, path: pki}}\n    path: issue/ci\n    field: certificate\n    data: {{common_name: c{i}.ci.example.com}}\n    ttl: 10m"
        );
    }
    yaml
}

/// A TCP proxy on loopback that holds every chunk for [`ONE_WAY`] before passing it on.
fn delay_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || pump(client, server));
            std::thread::spawn(move || pump(s2, c2));
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk delayed by [`ONE_WAY`] from its arrival (a queue, so
/// that chunks in flight do not add up their delays).
fn pump(mut from: TcpStream, to: TcpStream) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        let mut to = to;
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + ONE_WAY, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

fn curl(
    url: &str,
    pki: &Pki,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--cacert"])
        .arg(pki.ca())
        .args(["-X", method]);
    if !token.is_empty() {
        cmd.args(["-H", &format!("X-Vault-Token: {token}")]);
    }
    if let Some(body) = body {
        cmd.args(["-d", &body.to_string()]);
    }
    let out = cmd.arg(format!("{url}/v1/{path}")).output().expect("curl");
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn curl_login(url: &str, pki: &Pki, jwt: &str) -> String {
    let body = json!({"jwt": jwt, "role": ROLE});
    curl(url, pki, "", "POST", "auth/jwt/login", Some(&body))["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
