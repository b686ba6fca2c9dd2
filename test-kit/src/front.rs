//! A shared front door: one loopback HTTP address that serves OpenBao under `/v1/` and another
//! application everywhere else, the way a reverse proxy (nginx, a load balancer) often puts
//! Vault next to other services on one host name.
//!
//! [`OtherApp`] is a plain TCP listener standing in for that other application: it records every
//! connection and every byte it receives, so a test can assert that a job's ID token never
//! reached it. [`Front`] routes each request by its raw request target (what the client put on
//! the wire, before any server normalises it): `/v1/…` goes to the Bao address, anything else
//! to the other app. Every connection serves one request (`Connection: close`).
//!
//! [`Front`] also counts connections and the most it ever had open at once, for the fan-out cap.
//!
//! ```ignore
//! let other = OtherApp::start();
//! let front = Front::start(world.bao.addr(), other.addr());
//! world.write_config_with_vault(&front.url(), "", "");
//! // … run a job …
//! assert_eq!(other.connections(), 0);
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A listener on a free loopback port whose accept loop (a thread of its own) hands every
/// connection to a handler until the listener is dropped.
struct Acceptor {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Acceptor {
    /// Binds (`what` names the listener in a panic) and starts the loop.
    fn start(what: &str, mut serve: impl FnMut(TcpStream) + Send + 'static) -> Acceptor {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    serve(conn);
                }
            });
        }
        Acceptor { addr, stop }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the loop, which then sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A listener that accepts anything and records it; answers `HTTP/1.1 200` with `{}`.
pub struct OtherApp {
    acceptor: Acceptor,
    state: Arc<OtherState>,
}

#[derive(Default)]
struct OtherState {
    connections: AtomicUsize,
    received: Mutex<Vec<u8>>,
}

impl OtherApp {
    /// Listens on a free loopback port.
    pub fn start() -> OtherApp {
        let state = Arc::new(OtherState::default());
        let acceptor = {
            let state = state.clone();
            Acceptor::start("other app", move |mut conn| {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let raw = read_raw(&mut conn)
                        .map(|(_, _, raw)| raw)
                        .unwrap_or_default();
                    state.received.lock().expect("received").extend(raw);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    let _ = conn.shutdown(Shutdown::Both);
                });
            })
        };
        OtherApp { acceptor, state }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.acceptor.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every byte received so far.
    pub fn received(&self) -> Vec<u8> {
        self.state.received.lock().expect("received").clone()
    }
}

/// The front door; see the module docs.
pub struct Front {
    acceptor: Acceptor,
    state: Arc<FrontState>,
}

#[derive(Default)]
struct FrontState {
    connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    targets: Mutex<Vec<String>>,
}

impl Front {
    /// Serves on a free loopback port; `bao` is `http://127.0.0.1:<port>` (as [`super::Bao::addr`]),
    /// `other` a `host:port`.
    pub fn start(bao: &str, other: &str) -> Front {
        let bao = bao.trim_start_matches("http://").to_owned();
        let other = other.to_owned();
        let state = Arc::new(FrontState::default());
        let acceptor = {
            let state = state.clone();
            Acceptor::start("front", move |conn| {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_open.fetch_max(open, Ordering::SeqCst);
                let (state, bao, other) = (state.clone(), bao.clone(), other.clone());
                std::thread::spawn(move || {
                    proxy_one(conn, &bao, &other, &state);
                    state.open.fetch_sub(1, Ordering::SeqCst);
                });
            })
        };
        Front { acceptor, state }
    }

    /// `http://127.0.0.1:<port>`, the address to configure as the Vault server.
    pub fn url(&self) -> String {
        format!("http://{}", self.acceptor.addr)
    }

    /// Every request target seen, raw, in order of arrival.
    pub fn targets(&self) -> Vec<String> {
        self.state.targets.lock().expect("targets").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The most connections that were open at one time.
    pub fn max_open(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at one time: read in full from the client and
    /// not yet answered. (A client that waits for one answer before it sends the next request
    /// never counts twice here, while a closing connection may still count as open.)
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `Content-Length` body) from `conn`: the request target, the
/// head's length and the raw bytes (whatever arrived when the peer stopped early).
fn read_raw(conn: &mut TcpStream) -> Option<(String, usize, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) if data.is_empty() => return None,
            Ok(0) | Err(_) => return Some((String::new(), data.len(), data)),
            Ok(n) => data.extend(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend(&buf[..n]),
        }
    }
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    Some((target, head_end, data))
}

/// One request, its head rewritten so that the upstream closes after one response.
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let (target, head_end, data) = read_raw(conn)?;
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut rewritten = String::new();
    for (i, line) in head.trim_end_matches("\r\n").split("\r\n").enumerate() {
        let lower = line.to_ascii_lowercase();
        if i > 0 && (lower.starts_with("connection:") || lower.starts_with("keep-alive:")) {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut request = rewritten.into_bytes();
    request.extend(&data[head_end..]);
    Some((target, request))
}

fn proxy_one(mut conn: TcpStream, bao: &str, other: &str, state: &FrontState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((target, request)) = read_request(&mut conn) else {
        return;
    };
    state.targets.lock().expect("targets").push(target.clone());
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    let response = forward(&target, &request, bao, other);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let _ = conn.write_all(&response);
    let _ = conn.shutdown(Shutdown::Both);
}

fn forward(target: &str, request: &[u8], bao: &str, other: &str) -> Vec<u8> {
    let upstream = if target.starts_with("/v1/") {
        bao
    } else {
        other
    };
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec();
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(30)));
    let mut response = Vec::new();
    if up.write_all(request).is_ok() {
        let _ = up.read_to_end(&mut response);
    }
    response
}
