//! The store on the lab's real PostgreSQL: TLS with certificate and host name checked, clear
//! errors that never show the database password, and a server stopped, started and restarted
//! in the middle of a backlog. (The ingestion, follow-up, quarantine, outbox and crash suites run on PostgreSQL
//! too: scripts/test runs them with MAIL2TICKET_TEST_STORE=postgres.)

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab, TestConfig, TestStore};
use mail2ticket::secret::Secret;
use mail2ticket::store::{FindQuery, Incoming, Store, TicketRules};

/// The migration that folds words from Unicode decomposition (migrations/postgres/0010).
const CHEAP_WORD_FOLD: i64 = 10;

/// The migration that finds Message-IDs by a hash (migrations/postgres/0013).
const MESSAGE_ID_HASHES: i64 = 13;

/// The tests here that connect hold this for reading; the one that stops the server holds it for
/// writing, so no other test of this suite meets the server while it is down.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The lab's URL for a fresh database, with `(from, to)` replaced in it.
async fn url_with(lab: &Lab, from: &str, to: &str) -> String {
    let url = common::fresh_pg_database(lab).await;
    assert!(url.contains(from), "{url} has no {from}");
    url.replace(from, to)
}

#[tokio::test]
async fn connects_with_verify_full_and_the_lab_ca_over_tls() {
    let _server = SERVER.read().await;
    let lab = Lab::get();
    let url = common::fresh_pg_database(lab).await;
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let store = Store::open_url(&Secret::new(url)).await.unwrap();
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(tls, "the store's connection is not encrypted");
    store.close().await;
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused_without_showing_the_password() {
    let _server = SERVER.read().await;
    let lab = Lab::get();
    let url = url_with(lab, lab.ca(), lab.var("MAIL_LAB_OTHER_CA")).await;
    let err = Store::open_url(&Secret::new(url))
        .await
        .unwrap_err()
        .to_string();
    let password = lab.var("MAIL_LAB_PG_PASSWORD");
    assert!(!err.contains(password), "{err}");
    assert!(err.contains("cannot connect to the ticket store"), "{err}");
    assert!(err.contains("sslrootcert"), "says what to check: {err}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_showing_it() {
    let _server = SERVER.read().await;
    let lab = Lab::get();
    let password = lab.var("MAIL_LAB_PG_PASSWORD");
    let url = url_with(lab, password, "Wrong-Secret-77").await;
    let err = Store::open_url(&Secret::new(url))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("Wrong-Secret-77"), "{err}");
    assert!(err.contains("mail2ticket:***@localhost"), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
}

/// `check-config` on a config file of `text`.
fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    common::mail2ticket_cmd(&config)
        .arg("check-config")
        .output()
        .unwrap()
}

#[test]
fn path_and_url_together_are_refused_with_key_and_line() {
    let out = check_config(
        "[store]\npath = \"/tmp/t.db\"\nurl = \"postgres://m2t:Inline-Secret-9@db/tickets\"\n",
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains(":3:") && err.contains("store.url"), "{err}");
    assert!(err.contains("exactly one of path"), "{err}");
    assert!(!err.contains("Inline-Secret-9"), "{err}");
}

#[test]
fn a_password_written_in_the_config_is_warned_about_and_never_printed() {
    let out = check_config("[store]\nurl = \"postgres://m2t:Inline-Secret-9@db/tickets\"\n");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert!(
        all.contains("store.url") && all.contains("PGPASSFILE"),
        "{all}"
    );
    assert!(!all.contains("Inline-Secret-9"), "{all}");
}

#[test]
fn a_url_that_is_not_postgres_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("store.url");
    std::fs::write(&url_file, "mysql://m2t:Other-Secret-3@db/tickets\n").unwrap();
    let out = check_config(&format!("[store]\nurl_file = \"{}\"\n", url_file.display()));
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("store.url_file") && err.contains("postgres://"),
        "{err}"
    );
    assert!(!err.contains("Other-Secret-3"), "{err}");
}

/// `scripts/mail-lab COMMAND` (pg-stop, pg-start, pg-restart) on the lab's server.
fn lab_postgres(lab: &Lab, command: &str) {
    let out = std::process::Command::new(common::repo_root().join("scripts/mail-lab"))
        .arg(command)
        .env("MAIL_LAB_DIR", lab.var("MAIL_LAB_DIR"))
        .env("MAIL_LAB_PG_PORT", lab.var("MAIL_LAB_PG_PORT"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}", common::stderr(&out));
}

/// The lab's server stopped until this is dropped, so a failing test never leaves it down.
struct ServerStopped<'a>(&'a Lab);

impl<'a> ServerStopped<'a> {
    fn stop(lab: &'a Lab) -> Self {
        lab_postgres(lab, "pg-stop");
        ServerStopped(lab)
    }
}

impl Drop for ServerStopped<'_> {
    fn drop(&mut self) {
        lab_postgres(self.0, "pg-start");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_mid_backlog_loses_and_doubles_nothing() {
    let _server = SERVER.write().await;
    let lab = Lab::get();
    let user = lab.fresh_user("pgrestart");
    let total: usize = 1500;
    let set: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            mails::simple(
                &user,
                &format!("Backlog {i}"),
                &format!("pgrestart-{i}@customer.example.test"),
                "",
            )
        })
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new_on(
        TestStore::Postgres,
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        "",
    );
    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    // The outage must fall inside the backlog however fast this machine is: the daemon is
    // frozen as soon as its first batch is stored, the server stopped under it, and only then
    // does the daemon run on, into a server that is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while cfg.ticket_count().await == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.signal("STOP");
    let before = cfg.ticket_count().await;
    assert!(
        before > 0 && before < total as i64,
        "the outage must start inside the backlog ({before} of {total} tickets stored)"
    );
    let stopped = ServerStopped::stop(lab);
    daemon.signal("CONT");
    let noticed_by = tokio::time::Instant::now() + Duration::from_secs(60);
    let noticed = loop {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        if log.contains("database server unreachable") {
            break true;
        }
        if tokio::time::Instant::now() > noticed_by {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(stopped);
    eprintln!("PostgreSQL stopped and started again with {before} of {total} tickets stored");
    assert!(
        noticed,
        "the daemon ran on into the stopped server without saying so:\n{}",
        std::fs::read_to_string(&daemon.log).unwrap_or_default()
    );
    // And a plain restart while it works through the rest.
    lab_postgres(lab, "pg-restart");
    let left = lab
        .wait_for_count(&user, "Archive", total as u32, Duration::from_secs(300))
        .await;
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert_eq!(
        left, total as u32,
        "every mail moved once; daemon log:\n{log}"
    );
    daemon.kill();
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(
        cfg.ticket_count().await,
        total as i64,
        "one ticket per mail"
    );
    let store = cfg.open_store().await;
    let subjects: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT subject FROM articles")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(subjects.len(), total, "no mail stored twice");
    // The daemon said the server was gone (above), not that a lock was held, and blamed no mail.
    assert!(
        !log.contains("locked past the busy timeout"),
        "a stopped server was called a lock:\n{log}"
    );
    assert!(
        !log.contains("storing a mail failed"),
        "a mail was blamed:\n{log}"
    );
    assert!(
        !log.contains(lab.var("MAIL_LAB_PG_PASSWORD")),
        "the database password reached the log"
    );
}

#[test]
fn an_oauth_account_on_a_postgres_store_must_name_its_token_file() {
    let out = check_config(
        "[store]\nurl = \"postgres://m2t@db/tickets\"\n\n[[account]]\nname = \"x\"\n\
         email = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
         ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\nauth = \"oauth2\"\n\n\
         [account.oauth2]\nprovider = \"google\"\ngrant = \"refresh_token\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\n",
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("oauth2.token_file") && err.contains("[store] url"),
        "{err}"
    );
}

/// A config with one account ("shop"), for the tests that read and write the store without a
/// daemon.
fn shop_config(lab: &Lab, on: TestStore) -> TestConfig {
    let account = imap_account(
        lab,
        "shop",
        "shop@example.test",
        "none",
        "action = \"delete\"\n",
    );
    TestConfig::new_on(on, &[account], "")
}

/// A fresh PostgreSQL store of the shop's config.
async fn shop_postgres() -> Store {
    shop_config(Lab::get(), TestStore::Postgres)
        .open_store()
        .await
}

/// When the first mail of the word-search test came in; mail `i` came `i` hours later.
fn words_base() -> chrono::DateTime<chrono::Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// A SQLite and a PostgreSQL store holding the same mails, one per subject (mail `i` with the
/// subject `subjects[i]`, its body `Body of` the subject, received `i` hours after
/// [`words_base`]), after `mails::varied` when `known` is set.
struct WordStores {
    sqlite: Store,
    postgres: Store,
    /// The PostgreSQL store's config, for the command an admin runs.
    config: TestConfig,
    _sqlite_dir: tempfile::TempDir,
}

impl WordStores {
    async fn with(subjects: &[String], known: bool) -> WordStores {
        let config = shop_config(Lab::get(), TestStore::Postgres);
        let postgres = config.open_store().await;
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(&dir.path().join("tickets.db")).await.unwrap();
        let incoming: Vec<Incoming> = subjects
            .iter()
            .enumerate()
            .map(|(i, subject)| {
                let raw = mails::simple(
                    "shop@example.test",
                    subject,
                    &format!("words-{i}@customer.example.test"),
                    "",
                );
                Incoming {
                    source_key: format!("imap:INBOX:1:{}", i + 1).parse().unwrap(),
                    parsed: mail2ticket::ingest::parse::parse(&raw),
                    raw,
                    received_at: words_base() + chrono::TimeDelta::hours(i as i64),
                    arrived: None,
                    extent: mail2ticket::ingest::Extent::Whole,
                }
            })
            .collect();
        for store in [&sqlite, &postgres] {
            if known {
                common::bigstore::ingest_known(store).await;
            }
            store
                .store_batch(&TicketRules::without_replies("shop"), &incoming)
                .await
                .unwrap();
        }
        WordStores {
            sqlite,
            postgres,
            config,
            _sqlite_dir: dir,
        }
    }
}

/// `tickets find` with these subject and text words, at any time, up to 100 hits.
fn words_query(subject: Option<&str>, text: Option<&str>) -> FindQuery {
    FindQuery {
        subject: subject.map(String::from),
        text: text.map(String::from),
        limit: 100,
        ..FindQuery::default()
    }
}

/// The same mails in a SQLite and a PostgreSQL store: for each query, the hits of
/// PostgreSQL's text search (migrations 0008 and 0010) and of SQLite's FTS5, newest first.
async fn find_on_both(
    sqlite: &Store,
    postgres: &Store,
    subject: Option<&str>,
    text: Option<&str>,
    window: (Option<i64>, Option<i64>),
    limit: u32,
) -> Vec<String> {
    let base = words_base();
    let query = FindQuery {
        since: window.0.map(|h| base + chrono::TimeDelta::hours(h)),
        until: window.1.map(|h| base + chrono::TimeDelta::hours(h)),
        limit,
        ..words_query(subject, text)
    };
    let ids = |hits: Vec<mail2ticket::store::ArticleHit>| -> Vec<String> {
        hits.into_iter().map(|h| h.message_id).collect()
    };
    let on_sqlite = ids(sqlite.find_articles(&query).await.unwrap());
    let on_postgres = ids(postgres.find_articles(&query).await.unwrap());
    assert_eq!(
        on_postgres, on_sqlite,
        "--subject {subject:?} TEXT {text:?} in {window:?}"
    );
    on_sqlite
}

#[tokio::test(flavor = "multi_thread")]
async fn word_search_on_postgres_finds_what_sqlite_finds() {
    let _server = SERVER.read().await;
    let subjects = [
        "Bestellung order-4711",
        "Paket nach Köln",
        "Rückfrage von kunde@example.com",
        "Lieferung verspätet",
    ];
    let subjects: Vec<String> = (0..40)
        .map(|i| format!("{} {i}", subjects[i % 4]))
        .collect();
    let both = WordStores::with(&subjects, true).await;
    let (sqlite, postgres, pg) = (&both.sqlite, &both.postgres, &both.config);
    let all = (None, None);
    // What a person types: a number out of an order reference, a place without its accent,
    // part of an address, a prefix, words of an HTML body, a subject word.
    for (subject, text, found) in [
        (None, Some("4711"), 10),
        (None, Some("order-4711"), 10),
        (None, Some("koln"), 11),
        (None, Some("Köln beschädigt"), 1),
        (None, Some("example"), 10),
        (None, Some("liefer*"), 11),
        (None, Some("Rechnung"), 1),
        (Some("Paket"), None, 10),
        (Some("Body"), None, 0),
        (Some("Lieferung"), Some("verspätet 3*"), 4),
        (None, Some("don't AND ( \" &"), 0),
        (None, Some("& !"), 0),
    ] {
        let hits = find_on_both(sqlite, postgres, subject, text, all, 100).await;
        assert_eq!(hits.len(), found, "--subject {subject:?} TEXT {text:?}");
    }
    // Newest first up to the limit, and a time window.
    let newest = find_on_both(sqlite, postgres, None, Some("body"), all, 5).await;
    assert_eq!(newest[0], "words-39@customer.example.test");
    let window = find_on_both(
        sqlite,
        postgres,
        None,
        Some("body"),
        (Some(10), Some(20)),
        100,
    )
    .await;
    assert_eq!(window.len(), 10);

    // And through the command an admin runs.
    let out = common::mail2ticket_cmd(&pg.path)
        .args(["tickets", "find", "--json", "4711"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.as_array().map(Vec::len), Some(10), "{hits}");
}

/// The letters where folding is subtle, as a person types them: both stores find the same
/// articles, as FTS5 (`unicode61 remove_diacritics 2`) folds. A Latin letter loses its
/// diacritics, also when they were written as a combining mark of their own; ß, ø and æ have
/// none to lose; a Cyrillic or Greek letter keeps its mark (й is not и); ASCII punctuation
/// breaks words.
#[tokio::test(flavor = "multi_thread")]
async fn word_search_folds_umlauts_accents_and_punctuation_as_fts5_does() {
    let _server = SERVER.read().await;
    let subjects = [
        "Grüße aus Köln",
        "Café crème brûlée",
        "Straße gesperrt",
        "Søren Ærø",
        "Йошкар-Ола",
        "Rechnung order-4711",
        "Adresse kunde@example.com",
        "Mu\u{308}nchen Hbf",
        "Nguyễn Văn",
        "Știință București",
        "Ελληνικά",
    ]
    .map(String::from);
    let both = WordStores::with(&subjects, false).await;
    for (subject, text, found) in [
        (None, Some("koln"), 1),
        (None, Some("KÖLN"), 1),
        (None, Some("gruße"), 1),
        (None, Some("grusse"), 0),
        (None, Some("cafe creme brulee"), 1),
        (None, Some("straße"), 1),
        (None, Some("strasse"), 0),
        (None, Some("søren ærø"), 1),
        (None, Some("soren"), 0),
        (None, Some("йошкар"), 1),
        (None, Some("иошкар"), 0),
        (None, Some("4711"), 1),
        (None, Some("order-4711"), 1),
        (None, Some("example"), 1),
        (None, Some("kunde@example.com"), 1),
        (None, Some("munchen"), 1),
        (None, Some("München"), 1),
        (None, Some("nguyen van"), 1),
        (None, Some("stiinta bucuresti"), 1),
        (None, Some("ελληνικά"), 1),
        (None, Some("ελληνικα"), 0),
        (Some("KOLN"), None, 1),
        (Some("München"), None, 1),
        (Some("București"), None, 1),
    ] {
        let hits = find_on_both(
            &both.sqlite,
            &both.postgres,
            subject,
            text,
            (None, None),
            100,
        )
        .await;
        assert_eq!(hits.len(), found, "--subject {subject:?} TEXT {text:?}");
    }
}

/// Letters whose fold differs from FTS5's (migrations/postgres/0010_cheap_word_fold.sql):
/// FTS5's own case table, older than PostgreSQL's lower(), folds ſ ẛ ς and the Greek symbol
/// letters to s, σ and plain letters and has no lower case for Ϳ; composing makes U+0374 (ʹ)
/// U+02B9; FTS5 keeps ǡ.
const FOLDED_UNLIKE_FTS5: &str = "ſẛςϐϑϕϖϰϱϵ\u{374}ͿǠǡ";

/// `search_text`, the fold of PostgreSQL's word indexes, against FTS5's tokenizer as a SQLite
/// store's `articles_fts` uses it (migrations/sqlite/0004), letter by letter for the Latin,
/// Greek and Cyrillic letters, each inside a word.
#[tokio::test]
async fn search_text_folds_each_latin_greek_and_cyrillic_letter_as_fts5_does() {
    use sqlx::Connection;
    let _server = SERVER.read().await;
    let postgres = shop_postgres().await;
    let letters: Vec<char> = [0xc0..=0x24f, 0x370..=0x4ff, 0x1e00..=0x1eff]
        .into_iter()
        .flatten()
        .filter_map(char::from_u32)
        .collect();
    let words: Vec<String> = letters.iter().map(|c| format!("q{c}q")).collect();

    let mut fts5 = sqlx::sqlite::SqliteConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    for ddl in [
        "CREATE VIRTUAL TABLE words USING fts5 (w, tokenize = 'unicode61 remove_diacritics 2')",
        "CREATE VIRTUAL TABLE terms USING fts5vocab (words, instance)",
    ] {
        sqlx::query(ddl).execute(&mut fts5).await.unwrap();
    }
    for (i, word) in words.iter().enumerate() {
        sqlx::query("INSERT INTO words (rowid, w) VALUES (?, ?)")
            .bind(i as i64)
            .bind(word)
            .execute(&mut fts5)
            .await
            .unwrap();
    }
    let mut tokens: Vec<Vec<String>> = vec![Vec::new(); words.len()];
    let terms: Vec<(i64, String)> =
        sqlx::query_as("SELECT doc, term FROM terms ORDER BY doc, \"offset\"")
            .fetch_all(&mut fts5)
            .await
            .unwrap();
    for (doc, term) in terms {
        tokens[doc as usize].push(term);
    }

    let folded: String = sqlx::query_scalar("SELECT search_text($1)")
        .bind(words.join("\n"))
        .fetch_one(postgres.pool())
        .await
        .unwrap();
    let folded: Vec<&str> = folded.split('\n').collect();
    assert_eq!(folded.len(), letters.len());

    let mut compared = 0;
    let mut unlike = String::new();
    for ((letter, tokens), folded) in letters.iter().zip(&tokens).zip(folded) {
        // Two tokens: the letter separates words for FTS5; PostgreSQL's parser decides there.
        if let [token] = tokens.as_slice() {
            compared += 1;
            if token != folded {
                unlike.push(*letter);
            }
        }
    }
    assert!(
        compared > 900,
        "only {compared} letters are letters to FTS5"
    );
    assert!(
        unlike.chars().all(|c| FOLDED_UNLIKE_FTS5.contains(c)),
        "folded unlike FTS5: {unlike}"
    );
}

/// `articles.words` as PostgreSQL computed it before migration 0020 (a generated column, 0010),
/// which the daemon's words must equal.
const WORDS_AS_POSTGRESQL_COMPUTED_THEM: &str = "to_tsvector('simple', search_text(subject)) \
     || to_tsvector('simple', search_text(left(text_body, 100000)))";

/// Rows of 256 code points (U+0500–U+05FF is row 0x05) where the daemon's words differ from
/// PostgreSQL 15's on the lab (glibc, C.UTF-8): characters newer than their Unicode tables (in
/// Hebrew, Samaritan, Latin Extended-D, the Hangul tone marks' row) and Indic, Tai Tham,
/// Tagalog and Balinese marks that glibc and Unicode classify differently
/// (src/store/word_vector.rs).
const ROWS_UNLIKE_POSTGRESQL: &[u32] = &[
    0x05, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x17, 0x1A, 0x1B, 0x1C, 0x30, 0xA7, 0xA9,
    0xAB,
];

/// A mail whose subject is `subject` and whose text is `body`, UTF-8 in 8 bits.
fn utf8_mail(subject: &str, body: &str, i: usize) -> Incoming {
    let raw = format!(
        "From: Kunde <customer@example.test>\r\nTo: shop@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <words-{i}@customer.example.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes();
    incoming(raw, i)
}

fn incoming(raw: Vec<u8>, i: usize) -> Incoming {
    Incoming {
        source_key: format!("imap:INBOX:1:{}", i + 1).parse().unwrap(),
        parsed: mail2ticket::ingest::parse::parse(&raw),
        raw,
        received_at: words_base(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    }
}

/// The subjects of the articles whose words differ from what PostgreSQL computes of them. The
/// store keeps each text compressed (migration 0022), which SQL cannot read: the mails' texts as
/// parsed go back into `text_body` first, for PostgreSQL to compute from.
async fn words_unlike_postgresql(store: &Store, mails: &[Incoming]) -> Vec<String> {
    for mail in mails {
        sqlx::query("UPDATE articles SET text_body = $1 WHERE source_key = $2")
            .bind(&mail.parsed.text)
            .bind(mail.source_key.to_string())
            .execute(store.pool())
            .await
            .unwrap();
    }
    sqlx::query_scalar(&format!(
        "SELECT subject FROM articles WHERE words IS DISTINCT FROM ({WORDS_AS_POSTGRESQL_COMPUTED_THEM}) \
         ORDER BY subject"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// The daemon writes the word column (migration 0020) exactly as PostgreSQL computed it: words
/// stored before and after the upgrade, the subject index and the queries (folded and parsed by
/// PostgreSQL) keep agreeing. Every character of the Basic Multilingual Plane and of the emoji,
/// mathematical letters and CJK Extension B rows, each inside a word, alone, after a digit and
/// after a number; the real-shaped mails of tests/data.
#[tokio::test]
async fn the_daemons_words_equal_postgresqls_for_every_character() {
    let _server = SERVER.read().await;
    let store = shop_postgres().await;
    let rows: Vec<u32> = (0x00..=0xFF)
        .chain([0x104, 0x1D4, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F9, 0x200])
        .collect();
    let mut mails: Vec<Incoming> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let body: String = (row * 256..row * 256 + 256)
                .filter_map(char::from_u32)
                // Line breaks and NUL would change the mail rather than its words.
                .filter(|c| !c.is_control())
                .map(|c| format!("x{c}x {c}y 5{c} 12e3{c} {c}\n"))
                .collect();
            let some: String = (row * 256..row * 256 + 256)
                .filter_map(char::from_u32)
                .filter(|c| !c.is_control())
                .take(6)
                .collect();
            utf8_mail(&format!("Zeile {row:03X} {some}"), &body, i)
        })
        .collect();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "tests/data has {} mails", files.len());
    for file in files {
        let i = mails.len();
        mails.push(incoming(std::fs::read(file).unwrap(), i));
    }
    store
        .store_batch(&TicketRules::without_replies("shop"), &mails)
        .await
        .unwrap();

    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM articles")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(stored, mails.len() as i64);
    let expected: Vec<String> = ROWS_UNLIKE_POSTGRESQL
        .iter()
        .map(|row| format!("Zeile {row:03X}"))
        .collect();
    let unlike: Vec<String> = words_unlike_postgresql(&store, &mails)
        .await
        .iter()
        .map(|subject| subject.chars().take(9).collect())
        .collect();
    assert_eq!(unlike, expected);
}

/// The write transactions plan without parallel workers: in a store of about 100,000 articles
/// PostgreSQL planned a batch's lookup of 500 Message-IDs with a parallel sequential scan, 16-25
/// ms per batch where the indexes take 1-2 ms (BENCHMARKS.md, "Growth"). A trigger notes the
/// setting inside the batch's transaction; the searches, outside it, keep the server's.
#[tokio::test]
async fn write_transactions_plan_without_parallel_workers() {
    let _server = SERVER.read().await;
    let store = shop_postgres().await;
    for statement in [
        "CREATE TABLE seen_in_write (workers TEXT NOT NULL)",
        "CREATE FUNCTION note_workers() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO seen_in_write VALUES (current_setting('max_parallel_workers_per_gather')); \
         RETURN NULL; END $$",
        "CREATE TRIGGER note_workers AFTER INSERT ON messages \
         FOR EACH STATEMENT EXECUTE FUNCTION note_workers()",
    ] {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    let batch: Vec<Incoming> = (0..3)
        .map(|i| utf8_mail(&format!("Bestellung {i}"), "Wo bleibt mein Paket?", i))
        .collect();
    store
        .store_batch(&TicketRules::without_replies("shop"), &batch)
        .await
        .unwrap();

    let seen: Vec<String> = sqlx::query_scalar("SELECT DISTINCT workers FROM seen_in_write")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(seen, ["0"], "inside the batch's write transaction");
    let outside: String =
        sqlx::query_scalar("SELECT current_setting('max_parallel_workers_per_gather')")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_ne!(
        outside, "0",
        "the server's default outside write transactions"
    );
}

/// PostgreSQL's limits, kept as it keeps them: 255 positions per word in a part and 256 after
/// `||`, no position past 16,383, words of 2,047 bytes or more left out, numbers in scientific
/// notation, an empty subject or body.
#[tokio::test]
async fn the_daemons_words_keep_postgresqls_limits() {
    let _server = SERVER.read().await;
    let store = shop_postgres().await;
    let many_words: String = (0..20_000).map(|i| format!("w{i} ")).collect();
    // 676 words of two letters, each ~49 times over 33,333 positions: past 16,383.
    let letters: Vec<char> = ('a'..='z').collect();
    let short_words: String = (0..40_000)
        .map(|i| format!("{}{} ", letters[i % 26], letters[i / 26 % 26]))
        .collect();
    let cases: Vec<(String, String)> = vec![
        ("Rechnung 4711".into(), "Die Rechnung kam nicht.".into()),
        ("".into(), "Nur Text".into()),
        ("Nur Betreff".into(), "".into()),
        ("ab ".repeat(300), "ab ".repeat(300)),
        ("Viele".into(), many_words),
        ("Kurz".into(), short_words),
        ("Lang".into(), format!("a {} b", "x".repeat(2047))),
        ("Fast lang".into(), format!("a {} b", "x".repeat(2046))),
        (
            "12e3abc 4e5b7f 1e x2e3 1E5".into(),
            "7e 7e7 7e7e7 0e0x".into(),
        ),
        (
            "Köln-Süd, Nguyễn İstanbul".into(),
            "Ǆemal ǅ ǆ ΣΊΣΥΦΟΣ Straße ẞ".into(),
        ),
        ("Lang body".into(), "ä ".repeat(60_000)),
    ];
    let mails: Vec<Incoming> = cases
        .iter()
        .enumerate()
        .map(|(i, (subject, body))| utf8_mail(subject, body, i))
        .collect();
    store
        .store_batch(&TicketRules::without_replies("shop"), &mails)
        .await
        .unwrap();
    let positions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM articles WHERE words @@ to_tsquery('simple', 'w15000') \
         AND length(words) > 15000",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        positions, 1,
        "the words of the first 100,000 characters of a body of 20,000 words"
    );
    assert_eq!(
        words_unlike_postgresql(&store, &mails).await,
        Vec::<String>::new()
    );
}

/// A fresh database migrated up to the step before `migration`, holding one ticket with one
/// article as a store of that version wrote them; returns its URL.
async fn one_article_before(migration: i64, message_id: &str, subject: &str, text: &str) -> String {
    use sqlx::Connection;
    let url = common::fresh_pg_database(Lab::get()).await;
    let mut pg = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    common::migrate_postgres_before(&mut pg, migration).await;
    sqlx::query(
        "INSERT INTO tickets (id, number, account, ticket_type, status, created_at, updated_at) \
         VALUES (1, '10001', 'shop', 'support', 'open', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    )
    .execute(&mut pg)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO articles (id, ticket_id, account, source_key, message_id, subject, text_body, \
         raw, raw_sha256, received_at, created_at) VALUES (1, 1, 'shop', 'imap:INBOX:1:1', $1, $2, \
         $3, '\\x00', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    )
    .bind(message_id)
    .bind(subject)
    .bind(text)
    .execute(&mut pg)
    .await
    .unwrap();
    pg.close().await.unwrap();
    url
}

/// A store written before migration 0010 holds words folded by the earlier function, which left
/// letters such as ễ, ș and a combining umlaut as they were: the upgrade derives them again, in
/// the words column and in the subject index.
#[tokio::test]
async fn words_folded_before_the_upgrade_are_found_after_it() {
    let _server = SERVER.read().await;
    let url = one_article_before(
        CHEAP_WORD_FOLD,
        "old@customer.example.test",
        "Nguyễn in București",
        "Lieferung nach Mu\u{308}nchen",
    )
    .await;

    let store = Store::open_url(&Secret::new(url)).await.unwrap();
    for (subject, text) in [
        (Some("nguyen bucuresti"), None),
        (None, Some("munchen")),
        (Some("bucuresti"), Some("munchen")),
    ] {
        let hits = store
            .find_articles(&words_query(subject, text))
            .await
            .unwrap();
        assert_eq!(
            hits.iter()
                .map(|h| h.message_id.as_str())
                .collect::<Vec<_>>(),
            ["old@customer.example.test"],
            "--subject {subject:?} TEXT {text:?}"
        );
    }
}

/// An article stored before migration 0013 gets its hash when the store is opened, and a
/// reader finds it by the query docs/schema.md gives, which computes the hash in SQL.
#[tokio::test]
async fn an_article_stored_before_the_hashes_is_found_by_the_documented_query() {
    let _server = SERVER.read().await;
    let message_id = "1f3a.ÄÖ-Zoë+shop@mail.example.test";
    let url =
        one_article_before(MESSAGE_ID_HASHES, message_id, "Lieferung", "Wo bleibt sie?").await;

    let store = Store::open_url(&Secret::new(url)).await.unwrap();
    let old_index: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() \
         AND indexname = 'articles_message_id'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(old_index, 0, "dropped once every article has its hash");
    let documented: Vec<i64> = sqlx::query_scalar(
        "SELECT a.id FROM message_id_hashes h JOIN articles a ON a.id = h.article_id \
         WHERE h.hash = ('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint \
           AND a.message_id = $1",
    )
    .bind(message_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(documented, [1]);
    let query = FindQuery {
        message_id: Some(format!("<{message_id}>")),
        ..FindQuery::default()
    };
    let hits = store.find_articles(&query).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, message_id);
    store.close().await;
}

/// A shop moving to PostgreSQL with `store copy`: the store written by an earlier version
/// (tests/data/stores) copied into an empty database reads the same ticket by ticket, raw mail
/// by raw mail; the bookkeeping came along, so no mail would be fetched again; a second copy
/// is refused; new mail after the copy gets ids past the copied ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_copied_to_postgres_reads_the_same() {
    let _server = SERVER.read().await;
    let lab = Lab::get();
    let sqlite = shop_config(lab, TestStore::Sqlite);
    std::fs::copy(
        common::repo_root().join("tests/data/stores/main-2026-11-30.sqlite"),
        &sqlite.store,
    )
    .unwrap();
    let pg = shop_config(lab, TestStore::Postgres);
    let run = |cfg: &TestConfig, args: &[&str]| {
        common::mail2ticket_cmd(&cfg.path)
            .args(args)
            .output()
            .unwrap()
    };
    let json = |cfg: &TestConfig, args: &[&str]| -> serde_json::Value {
        let out = run(cfg, args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let from = sqlite.store.to_str().unwrap();

    let out = run(&pg, &["store", "copy", "--from", from]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", common::stderr(&out));
    assert!(
        said.contains("copied 44 ticket(s) and 56 article(s)"),
        "{said}"
    );
    assert!(!said.contains(lab.var("MAIL_LAB_PG_PASSWORD")), "{said}");

    let list = ["tickets", "list", "--json", "--limit", "1000"];
    let tickets = json(&sqlite, &list);
    assert_eq!(tickets.as_array().map(Vec::len), Some(44));
    assert_eq!(json(&pg, &list), tickets);
    for ticket in tickets.as_array().unwrap() {
        let number = ticket["number"].as_str().unwrap();
        let show = ["tickets", "show", number, "--json"];
        assert_eq!(json(&pg, &show), json(&sqlite, &show), "ticket {number}");
        let raw = ["tickets", "show", number, "--raw", "1"];
        let (on_pg, on_sqlite) = (run(&pg, &raw), run(&sqlite, &raw));
        assert!(on_pg.status.success(), "{}", common::stderr(&on_pg));
        assert_eq!(
            on_pg.stdout, on_sqlite.stdout,
            "raw mail of ticket {number}"
        );
    }
    for words in ["order", "defaut", "rucksendung auftrag"] {
        let find = ["tickets", "find", "--json", "--limit", "100", words];
        let hits = json(&sqlite, &find);
        assert!(!hits.as_array().unwrap().is_empty(), "{words}");
        assert_eq!(json(&pg, &find), hits, "{words}");
    }

    // The daemon's bookkeeping: processed keys, the quarantined mail, the sent replies.
    let postgres = pg.open_store().await;
    for (table, rows) in [("processed", 56), ("failures", 1), ("outbox", 3)] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(postgres.pool())
            .await
            .unwrap();
        assert_eq!(n, rows, "{table}");
    }

    let again = run(&pg, &["store", "copy", "--from", from]);
    assert!(!again.status.success());
    assert!(
        common::stderr(&again).contains("already holds 44 ticket(s)"),
        "{}",
        common::stderr(&again)
    );

    // New mail with an attachment and a reply after the copy: ids continue past the copied.
    let mail = common::mails::varied(4, "shop@example.test", "after-copy");
    let incoming = Incoming {
        source_key: "imap:INBOX:1:9001".parse().unwrap(),
        parsed: mail2ticket::ingest::parse::parse(&mail.raw),
        raw: mail.raw,
        received_at: words_base(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    };
    let outcome = postgres
        .store_batch(&TicketRules::without_replies("shop"), &[incoming])
        .await
        .unwrap();
    assert!(
        matches!(outcome[..], [mail2ticket::store::Outcome::NewTicket { .. }]),
        "{outcome:?}"
    );
    let attachments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attachments")
        .fetch_one(postgres.pool())
        .await
        .unwrap();
    assert_eq!(attachments, 11);
}

/// NUL bytes are legal in a mail's 8-bit body and header, but PostgreSQL's text cannot hold
/// them: such a mail still becomes a ticket on both stores (the raw mail keeps every byte).
#[tokio::test(flavor = "multi_thread")]
async fn a_mail_with_nul_bytes_becomes_a_ticket_on_both_stores() {
    let _server = SERVER.read().await;
    let lab = Lab::get();
    let raw = b"From: Kunde <k\0@example.test>\r\nSubject: Null\0byte\r\nMessage-ID: <nul\0@example.test>\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nA body with \0 a NUL.\r\n"
        .to_vec();
    let incoming = Incoming {
        source_key: "imap:INBOX:1:1".parse().unwrap(),
        parsed: mail2ticket::ingest::parse::parse(&raw),
        raw: raw.clone(),
        received_at: words_base(),
        arrived: None,
        extent: mail2ticket::ingest::Extent::Whole,
    };
    let pg = shop_config(lab, TestStore::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("tickets.db")).await.unwrap();
    for store in [&pg.open_store().await, &sqlite] {
        let outcome = store
            .store_batch(
                &TicketRules::without_replies("shop"),
                std::slice::from_ref(&incoming),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome[..], [mail2ticket::store::Outcome::NewTicket { .. }]),
            "{outcome:?}"
        );
    }
}
