//! What each kind of mail costs to ingest, without the network: parses a folder of `.eml` files
//! (e.g. written by `scripts/bench.d/corpus.py`), sorts them into kinds, and stores each kind in
//! batches of 500 through `Store::store_batch` into a fresh store, as `run --once` would. Replies
//! go last, so the mails they answer are stored. Prints per kind: mails, average size, parse and
//! store microseconds per mail (wall time, one thread).
//!
//!   ingest_profile --mails DIR (--store PATH | --postgres URL_ENV)
//!
//! `--postgres URL_ENV`: into the PostgreSQL database whose URL is in that environment
//! variable (an empty schema, or one this profile wrote before: its ids carry on).
//!
//! `RUST_LOG=sqlx::query=debug` logs every statement with its time (to stderr).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mail2ticket::ingest::parse::{parse, ParsedMail};
use mail2ticket::store::{Incoming, Store, TicketRules};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The kinds of the benchmark's mixed corpus, most specific first.
fn kind(raw: &[u8], p: &ParsedMail) -> &'static str {
    let head = String::from_utf8_lossy(&raw[..raw.len().min(4096)]).to_ascii_lowercase();
    if !p.in_reply_to.is_empty() || !p.references.is_empty() {
        "reply (In-Reply-To, quoted)"
    } else if !p.attachments.is_empty() {
        "with an attachment (PDF or logo)"
    } else if head.contains("multipart/alternative") {
        "multipart/alternative"
    } else if head.contains("text/html") {
        "HTML only"
    } else if head.contains("iso-8859-1") {
        "plain text, ISO-8859-1"
    } else {
        "plain text, UTF-8"
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--mails").expect("--mails DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read --mails")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    // kind -> (mails, bytes, parse time, store time, parsed mails)
    type Kind = (usize, usize, Duration, Duration, Vec<Incoming>);
    let mut kinds: BTreeMap<&'static str, Kind> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let raw = std::fs::read(f).unwrap();
        let t = Instant::now();
        let parsed = parse(&raw);
        let took = t.elapsed();
        let k = kinds.entry(kind(&raw, &parsed)).or_default();
        k.0 += 1;
        k.1 += raw.len();
        k.2 += took;
        k.4.push(Incoming {
            source_key: format!("imap:INBOX:1:{}", i + 1).parse().unwrap(),
            raw,
            parsed,
            received_at: chrono::Utc::now(),
            arrived: None,
            extent: mail2ticket::ingest::Extent::Whole,
        });
    }
    let store = match arg(&args, "--postgres") {
        Some(var) => {
            let url = std::env::var(&var).unwrap_or_else(|_| panic!("{var} is not set"));
            Store::open_url(&mail2ticket::secret::Secret::new(url))
                .await
                .expect("open the PostgreSQL store")
        }
        None => {
            let path =
                PathBuf::from(arg(&args, "--store").expect("--store PATH or --postgres URL_ENV"));
            Store::open(&path).await.expect("open the store")
        }
    };
    let rules = TicketRules::without_replies("support");
    let mut order: Vec<&'static str> = kinds.keys().copied().collect();
    order.sort_by_key(|k| k.starts_with("reply"));
    for name in order {
        let k = kinds.get_mut(name).unwrap();
        let mails = std::mem::take(&mut k.4);
        let t = Instant::now();
        for batch in mails.chunks(500) {
            store.store_batch(&rules, batch).await.expect("store");
        }
        k.3 = t.elapsed();
    }
    store.close().await;
    println!(
        "{:<36}{:>7}{:>9}{:>12}{:>12}",
        "kind", "mails", "KB avg", "parse µs", "store µs"
    );
    for (name, (n, bytes, parse_t, store_t, _)) in &kinds {
        let per = |d: &Duration| d.as_secs_f64() * 1e6 / *n as f64;
        println!(
            "{name:<36}{n:>7}{:>9.1}{:>12.0}{:>12.0}",
            *bytes as f64 / *n as f64 / 1024.0,
            per(parse_t),
            per(store_t)
        );
    }
}
