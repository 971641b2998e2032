//! A store of years for the `tickets list` / `find` / `show --raw` tests: 100,000 generated
//! articles (`Store::generate`, not through IMAP), then the varied test mails of `mails.rs`
//! ingested on top through the real write path (`Store::store_batch`), so their raw bytes,
//! attachments and full-text entries are exactly what ingestion makes of them.

use std::path::PathBuf;
use std::sync::OnceLock;

use mail2ticket::store::synthetic::Synthetic;
use mail2ticket::store::{Incoming, Outcome, Store, TicketRules};

use super::mails::{varied, TestMail};

pub const GENERATED: u64 = 100_000;
/// The account the known mails were ingested into.
pub const KNOWN_ACCOUNT: &str = "known";

pub struct BigStore {
    pub config: PathBuf,
    pub store: PathBuf,
    /// The mails ingested on top, with their ticket numbers (each opens its own ticket).
    pub known: Vec<(TestMail, String)>,
}

impl BigStore {
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        super::mail2ticket_cmd(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and prints JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            super::stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }

    /// A read-only SQL answer to compare the commands against.
    pub fn sql_i64(&self, sql: &str) -> i64 {
        self.sql(sql)
    }

    pub fn sql_text(&self, sql: &str) -> String {
        self.sql(sql)
    }

    fn sql<T>(&self, sql: &str) -> T
    where
        T: Send
            + Unpin
            + 'static
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>,
    {
        let (path, sql) = (self.store.clone(), sql.to_string());
        run_blocking(async move {
            use sqlx::ConnectOptions;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .connect()
                .await
                .unwrap();
            sqlx::query_scalar::<_, T>(&sql)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        })
    }
}

/// Runs a future on its own runtime on its own thread (callable from inside a tokio test).
pub fn run_blocking<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

/// The store, generated once per test process into the target directory (replaced each run, so
/// no run leaves a copy behind in /tmp).
pub fn big_store() -> &'static BigStore {
    static STORE: OnceLock<BigStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("find-bigstore");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("tickets.db");
        let config = dir.join("config.toml");
        super::write_private(
            &config,
            &format!(
                "[store]\npath = \"{}\"\n\n[[account]]\nname = \"known\"\nemail = \"known@example.test\"\n\
                 protocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
                 ticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n",
                store.display()
            ),
        );
        let path = store.clone();
        let known = run_blocking(async move {
            let db = Store::open(&path).await.unwrap();
            let done = db.generate(&Synthetic::new(GENERATED)).await.unwrap();
            assert_eq!(done.articles, GENERATED);
            let known = ingest_known(&db).await;
            db.close().await;
            known
        });
        BigStore {
            config,
            store,
            known,
        }
    })
}

/// Ingests the seven kinds of `mails::varied` through `store_batch`; each opens a ticket.
pub async fn ingest_known(db: &Store) -> Vec<(TestMail, String)> {
    let mails: Vec<TestMail> = (0..7)
        .map(|i| varied(i, "known@example.test", "bigstore"))
        .collect();
    let rules = TicketRules::without_replies(KNOWN_ACCOUNT);
    let incoming: Vec<Incoming> = mails
        .iter()
        .enumerate()
        .map(|(i, m)| Incoming {
            source_key: format!("imap:INBOX:1:{}", i + 1).parse().unwrap(),
            raw: m.raw.clone(),
            parsed: mail2ticket::ingest::parse::parse(&m.raw),
            received_at: "2026-11-28T10:00:00Z".parse().unwrap(),
            arrived: None,
            extent: mail2ticket::ingest::Extent::Whole,
        })
        .collect();
    let outcomes = db.store_batch(&rules, &incoming).await.unwrap();
    mails
        .into_iter()
        .zip(outcomes)
        .map(|(m, o)| match o {
            Outcome::NewTicket { number } => (m, number),
            other => panic!("a known mail did not open a ticket: {other:?}"),
        })
        .collect()
}
