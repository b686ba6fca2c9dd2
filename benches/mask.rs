//! Throughput of the streaming masker on synthetic CI log text.
//!
//! Why a hand-rolled harness: we want one table comparing the masker with a plain copy of the same
//! 64 KiB chunks in the same run (so machine noise affects both), and a `--pipe` mode that lets
//! `scripts/bench-mask.sh` compare the masker with `cat` over the very same bytes. No external
//! crates: the corpus and secrets come from a fixed-seed SplitMix64, so every run sees identical
//! input.
//!
//! Usage (`cargo bench --bench mask -- [OPTIONS]`):
//!
//! - no option: print the in-memory table for 1, 10 and 100 secrets;
//! - `--size-mib N`: corpus size (default 256);
//! - `--write-corpus PATH`: write the corpus to `PATH` and exit;
//! - `--pipe N`: mask stdin to stdout with the first `N` secrets, 64 KiB reads.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use leasehold::mask::MaskSet;

const CHUNK: usize = 64 * 1024;
const MASK: &str = "[MASKED]";
const SECRET_COUNTS: [usize; 3] = [1, 10, 100];
const MAX_SECRETS: usize = 100;
/// Raw occurrences planted per secret; each secret is also planted once base64-encoded.
const RAW_PLANTS: usize = 3;
const TIMED_RUNS: usize = 3;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Random alphanumeric secrets of 12–40 bytes, independent of the corpus size.
fn secrets() -> Vec<Vec<u8>> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = SplitMix(0x5ec2_e75e_c2e7);
    (0..MAX_SECRETS)
        .map(|_| {
            let len = 12 + rng.below(29);
            (0..len).map(|_| ALNUM[rng.below(ALNUM.len())]).collect()
        })
        .collect()
}

const CRATES: &[&str] = &[
    "serde", "tokio", "hyper", "rustls", "regex", "clap", "anyhow", "bytes", "mio", "libc",
];
const WORDS: &[&str] = &[
    "fetching",
    "resolving",
    "deltas",
    "objects",
    "layer",
    "cache",
    "restored",
    "uploading",
    "artifacts",
    "warning",
    "deprecated",
    "config",
    "runner",
    "docker",
    "image",
    "pulled",
    "digest",
    "sha256",
    "checking",
    "out",
    "skipping",
    "submodule",
    "complete",
    "done",
];

fn hex(rng: &mut SplitMix, out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8] = b"0123456789abcdef";
    for _ in 0..n {
        out.push(HEX[rng.below(16)]);
    }
}

/// One plausible CI log line.
fn line(rng: &mut SplitMix, n: u64, out: &mut Vec<u8>) {
    let (m, s, ms) = ((n / 60_000) % 60, (n / 1000) % 60, n % 1000);
    let _ = write!(out, "2026-11-21T10:{m:02}:{s:02}.{ms:03}Z ");
    let _ = match rng.below(8) {
        0 => writeln!(
            out,
            "   Compiling {} v{}.{}.{}",
            rng.pick(CRATES),
            rng.below(3),
            rng.below(40),
            rng.below(20)
        ),
        1 => writeln!(
            out,
            "added {} packages, and audited {} packages in {}s",
            rng.below(900),
            rng.below(1200),
            rng.below(60)
        ),
        2 => {
            let _ = write!(out, " ---> Running in ");
            hex(rng, out, 12);
            writeln!(out)
        }
        3 => writeln!(
            out,
            "test {}::tests::{}_{} ... ok",
            rng.pick(CRATES),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        4 => writeln!(
            out,
            "Downloading https://registry.example.com/{0}/-/{0}-1.{1}.{2}.tgz ({3} kB)",
            rng.pick(CRATES),
            rng.below(30),
            rng.below(10),
            rng.below(5000)
        ),
        5 => {
            let _ = write!(out, "{}: sha256:", rng.pick(WORDS));
            hex(rng, out, 64);
            writeln!(out)
        }
        _ => writeln!(
            out,
            "[INFO] {} {} {} {} ({}%)",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(101)
        ),
    };
}

/// About `size` bytes of log with every secret planted [`RAW_PLANTS`] times raw and once as
/// `echo "$S" | base64 -w0` output, at evenly spread line starts.
fn corpus(size: usize, secrets: &[Vec<u8>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut plants: Vec<Vec<u8>> = Vec::new();
    for s in secrets {
        for _ in 0..RAW_PLANTS {
            plants.push([b"export TOKEN=".as_slice(), s, b" # planted\n"].concat());
        }
        let mut nl = s.clone();
        nl.push(b'\n');
        let b64 = base64::engine::general_purpose::STANDARD.encode(&nl);
        plants.push(format!("auth: {b64}\n").into_bytes());
    }
    let every = size / (plants.len() + 1);
    let mut rng = SplitMix(0xc1_106);
    let mut out = Vec::with_capacity(size + 256);
    let mut next_plant = every;
    let mut plants = plants.into_iter();
    let mut n = 0;
    while out.len() < size {
        if out.len() >= next_plant {
            if let Some(p) = plants.next() {
                out.extend_from_slice(&p);
            }
            next_plant += every;
        }
        line(&mut rng, n, &mut out);
        n += 1;
    }
    out
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn copy_chunks(corpus: &[u8]) -> Duration {
    let mut out = Vec::with_capacity(CHUNK);
    let start = Instant::now();
    for chunk in corpus.chunks(CHUNK) {
        out.clear();
        out.extend_from_slice(chunk);
        black_box(&mut out);
    }
    start.elapsed()
}

/// Streams the corpus through a fresh masker; returns the time and how many masks were emitted.
fn mask_chunks(set: &MaskSet, corpus: &[u8], count: bool) -> (Duration, usize) {
    let finder = memchr::memmem::Finder::new(MASK);
    let mut masks = 0;
    let mut out = Vec::with_capacity(CHUNK + 1024);
    let start = Instant::now();
    let mut stream = set.stream();
    for chunk in corpus.chunks(CHUNK) {
        out.clear();
        stream.push(chunk, &mut out);
        if count {
            masks += finder.find_iter(&out).count();
        }
        black_box(&mut out);
    }
    out.clear();
    stream.finish(&mut out);
    if count {
        masks += finder.find_iter(&out).count();
    }
    black_box(&mut out);
    (start.elapsed(), masks)
}

fn build(secrets: &[Vec<u8>]) -> (MaskSet, Duration) {
    let start = Instant::now();
    let (set, report) = MaskSet::new(secrets.iter().map(|s| ("S", s.as_slice())), MASK, 8);
    assert!(report.too_short.is_empty() && report.build_error.is_none());
    (set, start.elapsed())
}

fn table(size: usize) {
    let secrets = secrets();
    let t = Instant::now();
    let corpus = corpus(size, &secrets);
    eprintln!(
        "generated {} bytes of synthetic CI log in {:.2?}",
        corpus.len(),
        t.elapsed()
    );
    println!(
        "corpus {:.1} MiB, {} KiB chunks, best of {TIMED_RUNS} runs, GB = 1e9 bytes",
        corpus.len() as f64 / (1 << 20) as f64,
        CHUNK / 1024
    );
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>8} {:>11} {:>11} {:>10}",
        "secrets",
        "patterns",
        "automaton",
        "build",
        "masked",
        "copy GB/s",
        "mask GB/s",
        "mask/copy"
    );
    for n in SECRET_COUNTS {
        let (set, build_time) = build(&secrets[..n]);
        let (_, masked) = mask_chunks(&set, &corpus, true);
        let expected = n * (RAW_PLANTS + 1);
        assert_eq!(
            masked, expected,
            "every planted occurrence, and nothing else, is masked"
        );
        let mut best_copy = Duration::MAX;
        let mut best_mask = Duration::MAX;
        for _ in 0..TIMED_RUNS {
            best_copy = best_copy.min(copy_chunks(&corpus));
            best_mask = best_mask.min(mask_chunks(&set, &corpus, false).0);
        }
        let (copy, mask) = (gbps(corpus.len(), best_copy), gbps(corpus.len(), best_mask));
        println!(
            "{n:>7} {:>8} {:>6} KiB {:>9.1?} {masked:>8} {copy:>11.2} {mask:>11.2} {:>9.1}%",
            set.pattern_count(),
            set.memory_usage() / 1024,
            build_time,
            100.0 * mask / copy
        );
    }
}

fn pipe(n: usize) -> std::io::Result<()> {
    let secrets = secrets();
    let (set, _) = build(&secrets[..n.min(MAX_SECRETS)]);
    let mut stream = set.stream();
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut buf = vec![0; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + 1024);
    loop {
        let read = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.clear();
        stream.push(&buf[..read], &mut out);
        output.write_all(&out)?;
    }
    out.clear();
    stream.finish(&mut out);
    output.write_all(&out)?;
    output.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size_mib = 256;
    let mut args = std::env::args().skip(1);
    let mut action = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Appended by `cargo bench`.
            "--bench" => {}
            "--size-mib" => size_mib = args.next().ok_or("--size-mib N")?.parse()?,
            "--write-corpus" => action = Some(("write", args.next().ok_or("--write-corpus PATH")?)),
            "--pipe" => action = Some(("pipe", args.next().ok_or("--pipe N")?)),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let size = size_mib * 1024 * 1024;
    match action {
        None => table(size),
        Some(("write", path)) => std::fs::write(path, corpus(size, &secrets()))?,
        Some((_, n)) => pipe(n.parse()?)?,
    }
    Ok(())
}
