//! Latency of `tickets list` and `tickets find` on a store of years (run by `scripts/bench --only
//! find`): generates the store directly if the file does not exist yet (store::synthetic), then
//! runs each kind of query `--rounds` times with varying parameters through the same Store
//! methods the commands call, and prints p50/p99 per kind as JSON on stdout.
//!
//!   find_bench --store PATH --articles N [--rounds 100] [--postgres URL_ENV | --generate-only]
//!
//! `--generate-only`: only generate the store (scripts/bench's grown-store backlog starts there).
//! `--postgres URL_ENV`: measure on PostgreSQL instead, the database URL in the environment
//! variable URL_ENV (never on the command line: it may carry a password). The generated SQLite
//! store is copied there first (`Store::copy_from_sqlite`, as `store copy` does) unless the
//! database already holds it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mail2ticket::store::synthetic::Synthetic;
use mail2ticket::store::{FindQuery, Sender, Store, TicketFilter};
use mail2ticket::when::When;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn find(q: impl FnOnce(&mut FindQuery)) -> FindQuery {
    let mut query = FindQuery::default();
    q(&mut query);
    query
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store_path = PathBuf::from(arg(&args, "--store").expect("--store PATH"));
    let articles: u64 = arg(&args, "--articles")
        .expect("--articles N")
        .parse()
        .unwrap();
    let rounds: usize = arg(&args, "--rounds").map_or(100, |r| r.parse().unwrap());
    let existed = store_path.exists();
    let store = Store::open(&store_path).await.expect("open the store");
    let mut generated_s = None;
    if !existed {
        let t = Instant::now();
        store
            .generate(&Synthetic::new(articles))
            .await
            .expect("generate");
        generated_s = Some(t.elapsed().as_secs_f64());
        eprintln!(
            "generated {articles} articles in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    if args.iter().any(|a| a == "--generate-only") {
        // The starting point of scripts/bench's grown-store backlog: no queries.
        store.close().await;
        return;
    }
    let mut copied_s = None;
    let store = match arg(&args, "--postgres") {
        None => store,
        Some(var) => {
            store.close().await;
            let url = std::env::var(&var).unwrap_or_else(|_| panic!("${var} is not set"));
            let pg = Store::open_url(&mail2ticket::secret::Secret::new(url))
                .await
                .expect("open the PostgreSQL store");
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM articles")
                .fetch_one(pg.pool())
                .await
                .unwrap();
            if held == 0 {
                let t = Instant::now();
                pg.copy_from_sqlite(&store_path, |_| {})
                    .await
                    .expect("copy into PostgreSQL");
                copied_s = Some(t.elapsed().as_secs_f64());
                eprintln!(
                    "copied into PostgreSQL in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
            }
            // Fresh statistics for the planner, as autovacuum would gather them by itself.
            sqlx::query("ANALYZE").execute(pg.pool()).await.unwrap();
            pg
        }
    };
    // Parameters that vary per round: real senders, Message-IDs and rare words of the store.
    let samples: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT from_email, message_id, subject FROM articles WHERE id % 997 = 0 ORDER BY id LIMIT $1",
    )
    .bind(rounds as i64)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let end = Synthetic::new(articles).end;
    let accounts = ["support", "returns", "billing", "sales"];
    let statuses = ["open", "pending", "closed"];
    let words = [
        "Sendungsverfolgung",
        "Rechnung",
        "refund",
        "beschädigt Karton",
        "liefer*",
        "password reset",
        "Gutschein ungültig",
    ];
    let day = move |d: i64| When::At(end - chrono::Duration::days(d));
    type Kind = (&'static str, Box<dyn Fn(usize) -> Query>);
    enum Query {
        List(TicketFilter),
        Find(FindQuery),
    }
    let kinds: Vec<Kind> = vec![
        (
            "list (newest 50)",
            Box::new(|_| Query::List(TicketFilter::default())),
        ),
        (
            "list --account",
            Box::new(move |i| {
                Query::List(TicketFilter {
                    account: Some(accounts[i % 4].into()),
                    ..TicketFilter::default()
                })
            }),
        ),
        (
            "list --status --type",
            Box::new(move |i| {
                Query::List(TicketFilter {
                    status: Some(statuses[i % 3].into()),
                    ticket_type: Some("invoice".into()),
                    ..TicketFilter::default()
                })
            }),
        ),
        (
            "list --account --since/--until (a week, years back)",
            Box::new(move |i| {
                let d = (i as i64 * 13) % 1500 + 7;
                Query::List(TicketFilter {
                    account: Some(accounts[i % 4].into()),
                    since: Some(day(d).start(now)),
                    until: Some(day(d - 7).end(now)),
                    ..TicketFilter::default()
                })
            }),
        ),
        (
            "find WORDS (common and rare)",
            Box::new(move |i| Query::Find(find(|q| q.text = Some(words[i % words.len()].into())))),
        ),
        ("find --from ADDRESS", {
            let s = samples.clone();
            Box::new(move |i| {
                let addr = &s[i % s.len()].0;
                Query::Find(find(|q| q.from = Some(addr.parse::<Sender>().unwrap())))
            })
        }),
        ("find --from DOMAIN", {
            let s = samples.clone();
            Box::new(move |i| {
                let domain = s[i % s.len()].0.rsplit('@').next().unwrap().to_string();
                Query::Find(find(|q| q.from = Some(Sender::Domain(domain))))
            })
        }),
        ("find --message-id", {
            let s = samples.clone();
            Box::new(move |i| {
                let id = s[i % s.len()].1.clone();
                Query::Find(find(|q| q.message_id = Some(id)))
            })
        }),
        ("find --subject WORDS", {
            let s = samples.clone();
            Box::new(move |i| {
                // The order number or invoice of a real subject: a rare word.
                let subject = s[i % s.len()].2.clone();
                let rare = subject
                    .split_whitespace()
                    .find(|w| w.chars().any(|c| c.is_ascii_digit()))
                    .unwrap_or("Rechnung")
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_string();
                Query::Find(find(|q| q.subject = Some(rare)))
            })
        }),
        (
            "find WORDS --account --since 30d",
            Box::new(move |i| {
                Query::Find(find(|q| {
                    q.text = Some(words[i % words.len()].into());
                    q.account = Some(accounts[i % 4].into());
                    q.since = Some(day(30).start(now));
                }))
            }),
        ),
    ];
    let mut report = serde_json::Map::new();
    report.insert("articles".into(), articles.into());
    report.insert("rounds".into(), rounds.into());
    if let Some(s) = generated_s {
        report.insert("generate_s".into(), s.into());
    }
    if let Some(s) = copied_s {
        report.insert("copy_to_postgres_s".into(), s.into());
    }
    report.insert(
        "store".into(),
        format!("{:?}", store.backend()).to_lowercase().into(),
    );
    let mut all = Vec::new();
    for (name, make) in &kinds {
        let mut times = Vec::with_capacity(rounds);
        let mut hits = 0;
        // The slowest round and what it asked, so a high p99 can be traced to its query.
        let mut slowest: Option<(Duration, String)> = None;
        for i in 0..rounds {
            let query = make(i);
            let t = Instant::now();
            hits += match &query {
                Query::List(f) => store.list_tickets(f).await.unwrap().len(),
                Query::Find(q) => store.find_articles(q).await.unwrap().len(),
            };
            let took = t.elapsed();
            times.push(took);
            if slowest.as_ref().is_none_or(|(t, _)| took > *t) {
                let asked = match &query {
                    Query::List(f) => format!("{f:?}"),
                    Query::Find(q) => format!("{q:?}"),
                };
                slowest = Some((took, asked));
            }
        }
        if let Some((took, asked)) = &slowest {
            eprintln!("  slowest {:.2} ms: {asked}", took.as_secs_f64() * 1000.0);
        }
        times.sort();
        all.extend(times.iter().copied());
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        eprintln!(
            "{name:<52} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {:>7.2} ms  ({:.0} hits/query)",
            percentile(&times, 1.0),
            hits as f64 / rounds as f64
        );
        report.insert(
            (*name).into(),
            serde_json::json!({"p50_ms": p50, "p99_ms": p99, "max_ms": percentile(&times, 1.0),
                               "hits_avg": hits as f64 / rounds as f64}),
        );
    }
    store.close().await;
    println!("{}", serde_json::Value::Object(report));
}
