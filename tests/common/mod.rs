//! Test harness for the real mail lab (scripts/mail-lab): Dovecot (IMAP, POP3, LMTP) and Postfix
//! on loopback with a generated CA. A test that needs the lab panics when it is not running:
//! it never skips silently.

#![allow(dead_code)]

pub mod bigstore;
pub mod browser;
pub mod cluster;
pub mod daemon;
pub mod diag;
pub mod graph;
pub mod http;
pub mod mails;
pub mod oauth;
pub mod page;
pub mod proxy;
pub mod smtp;
pub mod webhook;

pub use daemon::Daemon;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use futures::TryStreamExt;
use mail2ticket::store::StoreLocation;

pub struct Lab {
    pub env: HashMap<String, String>,
}

impl Lab {
    pub fn get() -> &'static Lab {
        static LAB: OnceLock<Lab> = OnceLock::new();
        LAB.get_or_init(|| {
            let path = std::env::var("MAIL_LAB_ENV")
                .unwrap_or_else(|_| "/tmp/mail2ticket-lab/lab.env".into());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "the mail lab is not running ({path}: {e}). Start it with `scripts/mail-lab up` \
                     or run the whole suite with `scripts/test`"
                )
            });
            let env: HashMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect();
            let lab = Lab { env };
            // Fail loudly if the servers are down even though the env file is there.
            let port = lab.port("MAIL_LAB_IMAP_PORT");
            std::net::TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_secs(2),
            )
            .unwrap_or_else(|e| {
                panic!("the mail lab's IMAP port {port} does not answer ({e}): run `scripts/mail-lab up`")
            });
            lab
        })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the lab env file"))
    }
    pub fn port(&self, key: &str) -> u16 {
        self.var(key).parse().unwrap()
    }
    pub fn password(&self) -> &str {
        self.var("MAIL_LAB_PASSWORD")
    }
    pub fn ca(&self) -> &str {
        self.var("MAIL_LAB_CA")
    }

    /// A mailbox no other test uses (the lab accepts any user at example.test).
    pub fn fresh_user(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("{prefix}-{}-{n}-{nanos:x}@example.test", std::process::id())
    }

    /// Writes mails straight into a user's maildir folder (fast, for big backlogs).
    pub fn seed(&self, user: &str, folder: &str, files: &[PathBuf]) {
        let script = repo_root().join("scripts/mail-lab");
        for chunk in files.chunks(2000) {
            let out = Command::new(&script)
                .arg("seed")
                .arg(user)
                .arg(folder)
                .args(chunk)
                .env("MAIL_LAB_DIR", self.var("MAIL_LAB_DIR"))
                .output()
                .expect("running scripts/mail-lab seed");
            assert!(
                out.status.success(),
                "seeding failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// An IMAP session on the plain port (test-side checks, not the code under test).
    pub async fn imap(&self, user: &str) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port("MAIL_LAB_IMAP_PORT")))
            .await
            .expect("connect to lab IMAP");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .unwrap()
            .expect("IMAP greeting");
        client
            .login(user, self.password())
            .await
            .map_err(|(e, _)| e)
            .expect("lab login")
    }

    /// Appends mails to a folder of a user over IMAP.
    pub async fn append(&self, user: &str, folder: &str, mails: &[Vec<u8>]) {
        let mut s = self.imap(user).await;
        let name = mail2ticket::imap::utf7::encode(folder);
        for m in mails {
            s.append(&name, None, None, m).await.expect("APPEND");
        }
        s.logout().await.ok();
    }

    /// Appends one mail with the INTERNALDATE the server is to give it, e.g.
    /// `"02-Dec-2025 09:00:00 +0100"` (RFC 3501 date-time).
    pub async fn append_arrived(&self, user: &str, folder: &str, mail: &[u8], arrived: &str) {
        let mut s = self.imap(user).await;
        let name = mail2ticket::imap::utf7::encode(folder);
        // async-imap puts the date into the command as given: the quotes are ours to write.
        s.append(&name, None, Some(&format!("\"{arrived}\"")), mail)
            .await
            .expect("APPEND with INTERNALDATE");
        s.logout().await.ok();
    }

    /// Removes the mail with sequence number `seq` from a folder, as another client would
    /// (flag \\Deleted, EXPUNGE).
    pub async fn expunge(&self, user: &str, folder: &str, seq: u32) {
        let mut s = self.imap(user).await;
        s.select(mail2ticket::imap::utf7::encode(folder))
            .await
            .expect("SELECT");
        s.store(seq.to_string(), "+FLAGS (\\Deleted)")
            .await
            .expect("STORE")
            .try_collect::<Vec<_>>()
            .await
            .expect("STORE");
        s.expunge()
            .await
            .expect("EXPUNGE")
            .try_collect::<Vec<_>>()
            .await
            .expect("EXPUNGE");
        s.logout().await.ok();
    }

    /// Number of mails in a folder.
    pub async fn count(&self, user: &str, folder: &str) -> u32 {
        let mut s = self.imap(user).await;
        let mb = s
            .examine(mail2ticket::imap::utf7::encode(folder))
            .await
            .unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}"));
        s.logout().await.ok();
        mb.exists
    }

    /// All raw messages in a folder, in UID order.
    pub async fn messages(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let mut s = self.imap(user).await;
        let mb = s
            .examine(mail2ticket::imap::utf7::encode(folder))
            .await
            .expect("EXAMINE");
        if mb.exists == 0 {
            return Vec::new();
        }
        let fetches: Vec<_> = s
            .uid_fetch("1:*", "BODY.PEEK[]")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut out: Vec<(u32, Vec<u8>)> = fetches
            .iter()
            .map(|f| (f.uid.unwrap_or(0), f.body().unwrap_or_default().to_vec()))
            .collect();
        out.sort_by_key(|(u, _)| *u);
        s.logout().await.ok();
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// Waits until a folder holds at least `n` mails.
    pub async fn wait_for_count(&self, user: &str, folder: &str, n: u32, timeout: Duration) -> u32 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.count(user, folder).await;
            if c >= n || tokio::time::Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a mail through the lab's Postfix (plain SMTP port, local delivery only).
    pub async fn smtp_send(&self, from: &str, to: &str, raw: &[u8]) {
        self.smtp_send_to_all(from, &[to], raw).await;
    }

    /// Sends one mail to several recipients in one SMTP transaction (To plus Cc, say).
    pub async fn smtp_send_to_all(&self, from: &str, to: &[&str], raw: &[u8]) {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.port("MAIL_LAB_SMTP_PORT"))
            .build();
        let envelope = lettre::address::Envelope::new(
            // An empty `from` is the null sender `<>` of bounces.
            Some(from)
                .filter(|f| !f.is_empty())
                .map(|f| f.parse().unwrap()),
            to.iter().map(|t| t.parse().unwrap()).collect(),
        )
        .unwrap();
        transport
            .send_raw(&envelope, raw)
            .await
            .expect("SMTP send to the lab");
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which store the suites run against: `MAIL2TICKET_TEST_STORE=postgres` puts every
/// [`TestConfig`] on a fresh database of the lab's PostgreSQL; SQLite otherwise. scripts/test runs
/// the ingestion, follow-up, quarantine, outbox and crash suites once with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    Postgres,
}

impl TestStore {
    pub fn current() -> TestStore {
        match std::env::var("MAIL2TICKET_TEST_STORE").as_deref() {
            Ok("postgres") => TestStore::Postgres,
            Ok("sqlite") | Err(_) => TestStore::Sqlite,
            Ok(other) => panic!("MAIL2TICKET_TEST_STORE={other}: expected sqlite or postgres"),
        }
    }
}

/// A new, empty store on the lab's PostgreSQL; returns its URL (TLS, verify-full). Each store is
/// a schema of its own (the URL sets `search_path`): a database per test would leave the
/// server's shutdown checkpoint (the restart test) thousands of files to flush.
pub async fn fresh_pg_database(lab: &Lab) -> String {
    use sqlx::Connection;
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = lab.var("MAIL_LAB_PG_URL");
    let name = format!(
        "t_{}_{}_{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut conn = sqlx::postgres::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| {
            panic!("the lab's PostgreSQL does not answer ({e}): run `scripts/mail-lab up`")
        });
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    format!("{admin}&options[search_path]={name}")
}

/// Migrates the PostgreSQL store behind `conn` up to the step before migration `version`, as the
/// version of mail2ticket before that step left its stores.
pub async fn migrate_postgres_before(conn: &mut sqlx::postgres::PgConnection, version: i64) {
    let mut earlier = sqlx::migrate::Migrator::new(repo_root().join("migrations/postgres"))
        .await
        .unwrap();
    earlier.migrations.to_mut().retain(|m| m.version < version);
    earlier.run(conn).await.unwrap();
}

/// A config file in a temporary directory, with the store beside it (SQLite) or in a fresh
/// PostgreSQL database (see [`TestStore`]).
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    /// The SQLite file (unused on PostgreSQL).
    pub store: PathBuf,
    pub location: StoreLocation,
}

impl TestConfig {
    /// `accounts` are TOML `[[account]]` bodies; the store and daemon sections are filled in.
    pub fn new(accounts: &[String], extra: &str) -> TestConfig {
        TestConfig::new_on(TestStore::current(), accounts, extra)
    }

    /// As [`TestConfig::new`], on the given store whatever the suite runs on.
    pub fn new_on(on: TestStore, accounts: &[String], extra: &str) -> TestConfig {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tickets.db");
        let (location, store_section) = match on {
            TestStore::Sqlite => (
                StoreLocation::Sqlite(store.clone()),
                format!("path = \"{}\"", store.display()),
            ),
            TestStore::Postgres => {
                let url = block_on(fresh_pg_database(Lab::get()));
                // In a file, as a deployment would keep it: the URL carries the password.
                let url_file = dir.path().join("store.url");
                write_private(&url_file, &url);
                (
                    StoreLocation::Postgres(mail2ticket::secret::Secret::new(url)),
                    format!("url_file = \"{}\"", url_file.display()),
                )
            }
        };
        let mut text = format!(
            "[store]\n{store_section}\n\n[daemon]\npoll_interval = \"1s\"\nnetwork_timeout = \"20s\"\n\n{extra}\n",
        );
        for a in accounts {
            text.push_str("[[account]]\n");
            text.push_str(a);
            text.push('\n');
        }
        let path = dir.path().join("config.toml");
        write_private(&path, &text);
        TestConfig {
            dir,
            path,
            store,
            location,
        }
    }

    /// The test's store, opened (and migrated) like the daemon does.
    pub async fn open_store(&self) -> mail2ticket::store::Store {
        mail2ticket::store::Store::open_at(&self.location)
            .await
            .unwrap()
    }

    /// Tickets in the store, safe while a daemon creates or writes it (0 before the schema
    /// exists).
    pub async fn ticket_count(&self) -> i64 {
        match &self.location {
            StoreLocation::Sqlite(path) => ticket_count(path).await,
            StoreLocation::Postgres(url) => {
                use sqlx::Connection;
                let Ok(mut conn) = sqlx::postgres::PgConnection::connect(url.expose()).await else {
                    return 0;
                };
                sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(0)
            }
        }
    }

    /// Makes the store refuse to save any article with this subject: a real storage failure
    /// for one mail, to test that it is quarantined and the rest carries on.
    pub async fn refuse_articles_with_subject(&self, subject: &str) {
        let store = self.open_store().await;
        let statements = match &self.location {
            StoreLocation::Sqlite(_) => vec![format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON articles WHEN NEW.subject = '{subject}' \
                 BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )],
            StoreLocation::Postgres(_) => vec![
                format!(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.subject = '{subject}' THEN RAISE EXCEPTION 'disk says no'; END IF; \
                     RETURN NEW; END $$"
                ),
                "CREATE TRIGGER refuse BEFORE INSERT ON articles FOR EACH ROW EXECUTE FUNCTION refuse()"
                    .to_string(),
            ],
        };
        for statement in statements {
            sqlx::query(&statement).execute(store.pool()).await.unwrap();
        }
        store.close().await;
    }

    /// Undoes [`TestConfig::refuse_articles_with_subject`]: the cause of the failures is fixed.
    pub async fn accept_articles_again(&self) {
        let store = self.open_store().await;
        let statements: &[&str] = match &self.location {
            StoreLocation::Sqlite(_) => &["DROP TRIGGER refuse"],
            StoreLocation::Postgres(_) => {
                &["DROP TRIGGER refuse ON articles", "DROP FUNCTION refuse()"]
            }
        };
        for statement in statements {
            sqlx::query(statement).execute(store.pool()).await.unwrap();
        }
        store.close().await;
    }

    pub fn run(&self, args: &[&str]) -> Output {
        mail2ticket_cmd(&self.path).args(args).output().unwrap()
    }

    /// Every ticket of the store, newest first.
    pub fn tickets(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["tickets", "list", "--json", "--limit", "1000000"]);
        assert!(
            out.status.success(),
            "tickets list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("tickets list --json is JSON")
    }

    /// The subjects of every ticket of the store, sorted.
    pub fn ticket_subjects(&self) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .tickets()
            .iter()
            .map(|t| t["subject"].as_str().unwrap().to_string())
            .collect();
        subjects.sort();
        subjects
    }

    pub fn show(&self, number: &str) -> serde_json::Value {
        let out = self.run(&["tickets", "show", number, "--json"]);
        assert!(
            out.status.success(),
            "tickets show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Writes a file only its owner may read, as an admin keeps a config or a secret (a config
/// others can read is warned about on stderr by every command).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn mail2ticket_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mail2ticket"));
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "mail2ticket=info");
    cmd
}

/// An IMAP account section for the lab.
pub fn imap_account(lab: &Lab, name: &str, user: &str, encryption: &str, extra: &str) -> String {
    lab_account(lab, "imap", name, user, encryption, extra)
}

/// A POP3 account section for the lab.
pub fn pop3_account(lab: &Lab, name: &str, user: &str, encryption: &str, extra: &str) -> String {
    lab_account(lab, "pop3", name, user, encryption, extra)
}

/// A POP3 account (no encryption) that reaches the lab through `port` (a proxy in front of it).
pub fn pop3_via(lab: &Lab, name: &str, user: &str, port: u16, extra: &str) -> String {
    pop3_account(lab, name, user, "none", extra).replace(
        &format!("port = {}", lab.port("MAIL_LAB_POP3_PORT")),
        &format!("port = {port}"),
    )
}

fn lab_account(
    lab: &Lab,
    protocol: &str,
    name: &str,
    user: &str,
    encryption: &str,
    extra: &str,
) -> String {
    let port_key = match (protocol, encryption) {
        ("imap", "ssl") => "MAIL_LAB_IMAPS_PORT",
        ("imap", _) => "MAIL_LAB_IMAP_PORT",
        (_, "ssl") => "MAIL_LAB_POP3S_PORT",
        _ => "MAIL_LAB_POP3_PORT",
    };
    format!(
        "name = \"{name}\"\nemail = \"{user}\"\nprotocol = \"{protocol}\"\nhost = \"localhost\"\nport = {}\n\
         encryption = \"{encryption}\"\nuser = \"{user}\"\npassword = \"{}\"\nca_file = \"{}\"\n\
         ticket_type = \"question\"\nticket_status = \"open\"\n{extra}\n",
        lab.port(port_key),
        lab.password(),
        lab.ca()
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Tickets in a store, read without migrating or writing, so it is safe while a daemon is
/// creating or writing the same file (0 until the daemon has created the schema).
pub async fn ticket_count(store: &Path) -> i64 {
    use sqlx::ConnectOptions;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(store)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10));
    let Ok(mut conn) = options.connect().await else {
        return 0;
    };
    sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

/// Runs a future to completion from synchronous test code, inside or outside a runtime.
fn block_on<F: std::future::Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(future)
        })
        .join()
        .unwrap()
    })
}
