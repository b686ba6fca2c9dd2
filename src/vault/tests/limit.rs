//! How many requests at once: every client of one server shares its cap.

use std::time::Duration;

use super::*;

/// A server that counts the requests it is handling at once (and the connections it got),
/// answering each after a short pause so that concurrent requests overlap.
struct CountingServer {
    address: String,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    fn start() -> CountingServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let server = CountingServer {
            address,
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            connections: Default::default(),
        };
        let (in_flight, max_in_flight, connections) = (
            server.in_flight.clone(),
            server.max_in_flight.clone(),
            server.connections.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                connections.fetch_add(1, SeqCst);
                let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                std::thread::spawn(move || {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend(&buf[..n]),
                            }
                        }
                        let end = pending
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(0, |i| i + 4);
                        pending.drain(..end);
                        let now = in_flight.fetch_add(1, SeqCst) + 1;
                        max_in_flight.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        in_flight.fetch_sub(1, SeqCst);
                        let body = br#"{"data": {"v": "x"}}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn requests_to_one_server_are_capped_across_its_clients() {
    let server = CountingServer::start();
    let spec = ServerSpec {
        limit: RequestLimit::new(4),
        ..spec(&server.address, 0)
    };
    // Two clients of one server (two logins, say) share its cap.
    let (a, b) = (fast(&spec), fast(&spec));
    let t = token();
    let reads = (0..64).map(|i| {
        let client = if i % 2 == 0 { &a } else { &b };
        let path = format!("kv/p{i}");
        let t = &t;
        async move { client.read(t, &path, false).await }
    });
    let results = futures_util::future::join_all(reads).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        (2..=4).contains(&server.max_in_flight()),
        "{} requests were in flight at once",
        server.max_in_flight()
    );
    assert!(
        server.connections() <= 8,
        "{} connections for a cap of 4 on two clients",
        server.connections()
    );
}
