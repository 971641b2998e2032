//! "Did my mail arrive?" in a store of years: `tickets list` filters and pages, `tickets find`
//! finds articles by sender, Message-ID, subject and words, and `tickets show --raw` /
//! `--attachment` give back the exact bytes. On a generated store of 100,000 articles with
//! real mails ingested on top (tests/common/bigstore.rs); the last test goes through the lab.

mod common;

use std::collections::BTreeSet;

use common::bigstore::{big_store, ingest_known, GENERATED, KNOWN_ACCOUNT};
use common::{Lab, TestConfig};
use sha2::{Digest, Sha256};

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn strs<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t[field].as_str().unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn list_shows_fifty_tickets_newest_first_and_obeys_limit() {
    let s = big_store();
    let page = s.json(&["tickets", "list", "--json"]);
    let created = strs(&page, "created_at");
    assert_eq!(created.len(), 50, "50 by default");
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    // The known mails were ingested last, so they are the newest tickets.
    let newest: BTreeSet<&str> = strs(&page, "number").into_iter().take(7).collect();
    let known: BTreeSet<&str> = s.known.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(newest, known);

    let page = s.json(&["tickets", "list", "--json", "--limit", "7"]);
    assert_eq!(page.as_array().unwrap().len(), 7);
}

#[test]
fn list_filters_by_account_status_and_type_together() {
    let s = big_store();
    let page = s.json(&[
        "tickets",
        "list",
        "--json",
        "--limit",
        "1000000",
        "--account",
        "returns",
        "--status",
        "open",
        "--type",
        "complaint",
    ]);
    let list = page.as_array().unwrap();
    assert!(!list.is_empty(), "the generated store has such tickets");
    for t in list {
        assert_eq!(
            (&t["account"], &t["status"], &t["type"]),
            (
                &serde_json::json!("returns"),
                &serde_json::json!("open"),
                &serde_json::json!("complaint")
            )
        );
    }
    let expected = s.sql_i64(
        "SELECT COUNT(*) FROM tickets WHERE account = 'returns' AND status = 'open' AND ticket_type = 'complaint'",
    );
    assert_eq!(list.len() as i64, expected);
}

#[test]
fn list_since_and_until_take_whole_days_and_ages() {
    let s = big_store();
    let page = s.json(&[
        "tickets",
        "list",
        "--json",
        "--limit",
        "1000000",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-15",
    ]);
    let created = strs(&page, "created_at");
    assert!(created
        .iter()
        .all(|c| *c >= "2026-11-01T00:00:00" && *c < "2026-11-16T00:00:00"));
    let expected = s.sql_i64(
        "SELECT COUNT(*) FROM tickets WHERE created_at >= '2026-11-01' AND created_at < '2026-11-16'",
    );
    assert_eq!(created.len() as i64, expected);
    assert!(expected > 100, "about 1,000 generated tickets a fortnight");

    let none = s.json(&["tickets", "list", "--json", "--until", "36500d"]);
    assert_eq!(none, serde_json::json!([]), "nothing is a century old");
    let all = s.json(&[
        "tickets", "list", "--json", "--since", "36500d", "--limit", "1000000",
    ]);
    assert_eq!(
        all.as_array().unwrap().len() as i64,
        s.sql_i64("SELECT COUNT(*) FROM tickets")
    );
}

#[test]
fn list_counts_each_tickets_articles() {
    let s = big_store();
    let page = s.json(&[
        "tickets",
        "list",
        "--json",
        "--limit",
        "500",
        "--until",
        "2026-06-30",
    ]);
    let mut with_followups = 0;
    for t in page.as_array().unwrap() {
        let number = t["number"].as_str().unwrap();
        let expected = s.sql_i64(&format!(
            "SELECT COUNT(*) FROM articles a JOIN tickets t ON t.id = a.ticket_id WHERE t.number = '{number}'"
        ));
        assert_eq!(t["articles"].as_i64().unwrap(), expected, "ticket {number}");
        with_followups += usize::from(expected > 1);
    }
    assert!(with_followups > 0, "some listed tickets have follow-ups");
}

#[test]
fn list_and_find_json_have_the_documented_fields() {
    let s = big_store();
    let page = s.json(&["tickets", "list", "--json", "--limit", "1"]);
    assert_eq!(
        keys(&page[0]),
        [
            "account",
            "articles",
            "created_at",
            "customer",
            "customer_name",
            "number",
            "status",
            "subject",
            "type"
        ]
        .map(String::from)
        .into()
    );
    let hits = s.json(&[
        "tickets",
        "find",
        "--json",
        "--from",
        "customer@example.test",
    ]);
    assert_eq!(
        keys(&hits[0]),
        [
            "account",
            "article",
            "from",
            "from_name",
            "message_id",
            "number",
            "received_at",
            "subject"
        ]
        .map(String::from)
        .into()
    );
}

#[test]
fn find_by_words_names_ticket_article_account_and_date() {
    let s = big_store();
    // "Köln" occurs only in a known mail; accents are folded, so "koln" finds it.
    let hits = s.json(&["tickets", "find", "--json", "koln", "beschädigt"]);
    let (mail, number) = &s.known[1];
    assert_eq!(
        hits,
        serde_json::json!([{
            "number": number,
            "article": 1,
            "account": KNOWN_ACCOUNT,
            "received_at": "2026-11-28T10:00:00Z",
            "from": "customer@example.test",
            "from_name": "Kunde",
            "subject": mail.subject,
            "message_id": mail.message_id,
        }])
    );
    let out = s.run(&["tickets", "find", "koln"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().nth(1).unwrap().starts_with(number.as_str()),
        "{text}"
    );
    assert!(text.contains("2026-11-28 10:00"), "{text}");
}

#[test]
fn find_by_common_words_returns_the_newest_hits_up_to_the_limit() {
    let s = big_store();
    let hits = s.json(&[
        "tickets",
        "find",
        "--json",
        "--limit",
        "20",
        "Sendungsverfolgung",
    ]);
    let received = strs(&hits, "received_at");
    assert_eq!(received.len(), 20);
    assert!(received.windows(2).all(|w| w[0] >= w[1]), "{received:?}");
    // A prefix finds the word too, and typed punctuation is not query syntax.
    let prefixed = s.json(&[
        "tickets",
        "find",
        "--json",
        "--limit",
        "20",
        "sendungsverf*",
    ]);
    assert_eq!(prefixed, hits);
    let odd = s.run(&["tickets", "find", "don't", "AND", "(", "order-4711", "\""]);
    assert!(odd.status.success(), "{}", common::stderr(&odd));
}

#[test]
fn find_by_subject_words_looks_only_at_subjects() {
    let s = big_store();
    let in_subject = s.json(&["tickets", "find", "--json", "--subject", "Foto"]);
    assert_eq!(strs(&in_subject, "number"), [s.known[4].1.as_str()]);
    // The generated bodies say "Foto des Schadens": as words anywhere there are many.
    let anywhere = s.json(&["tickets", "find", "--json", "Foto"]);
    assert_eq!(anywhere.as_array().unwrap().len(), 50);
    // Subject and text words combine.
    let both = s.json(&["tickets", "find", "--json", "--subject", "Foto", "Anhang"]);
    assert_eq!(strs(&both, "number"), [s.known[4].1.as_str()]);
}

#[test]
fn find_by_sender_takes_an_address_or_a_domain() {
    let s = big_store();
    for from in ["Customer@Example.TEST", "example.test", "@example.test"] {
        let hits = s.json(&["tickets", "find", "--json", "--from", from]);
        assert_eq!(hits.as_array().unwrap().len(), 7, "--from {from}");
    }
    let domain = s.json(&[
        "tickets",
        "find",
        "--json",
        "--limit",
        "1000000",
        "--from",
        "firma7.example",
    ]);
    let froms = strs(&domain, "from");
    assert!(froms.iter().all(|f| f.ends_with("@firma7.example")));
    assert_eq!(
        froms.len() as i64,
        s.sql_i64("SELECT COUNT(*) FROM articles WHERE from_email LIKE '%@firma7.example'")
    );
    let one = froms[0].to_string();
    let by_address = s.json(&[
        "tickets", "find", "--json", "--limit", "1000000", "--from", &one,
    ]);
    assert!(strs(&by_address, "from").iter().all(|f| *f == one));
    assert!(!by_address.as_array().unwrap().is_empty());
}

#[test]
fn find_by_message_id_names_the_article_inside_its_ticket() {
    let s = big_store();
    let (mail, number) = &s.known[3];
    for id in [mail.message_id.clone(), format!("<{}>", mail.message_id)] {
        let hits = s.json(&["tickets", "find", "--json", "--message-id", &id]);
        assert_eq!(strs(&hits, "number"), [number.as_str()]);
        assert_eq!(hits[0]["article"], 1);
    }
    // A generated follow-up: its position counts the ticket's earlier articles.
    let id = s.sql_i64("SELECT MAX(id) FROM articles WHERE is_followup = 1 AND account != 'known'");
    let position = s.sql_i64(&format!(
        "SELECT COUNT(*) FROM articles WHERE ticket_id = (SELECT ticket_id FROM articles WHERE id = {id}) AND id <= {id}"
    ));
    assert!(position >= 2);
    let raw_id = s.sql_text(&format!("SELECT message_id FROM articles WHERE id = {id}"));
    let hits = s.json(&["tickets", "find", "--json", "--message-id", &raw_id]);
    assert_eq!(hits[0]["article"].as_i64().unwrap(), position);
}

#[test]
fn find_without_anything_to_look_for_says_what_to_give() {
    let s = big_store();
    let out = s.run(&["tickets", "find", "--account", "support"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("--from ADDR"));
    assert!(out.stdout.is_empty());
}

#[test]
fn show_raw_writes_exactly_the_fetched_bytes() {
    let s = big_store();
    for (mail, number) in &s.known {
        let out = s.run(&["tickets", "show", number, "--raw", "1"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert_eq!(out.stdout, mail.raw, "ticket {number}");
        assert!(out.stderr.is_empty(), "{}", common::stderr(&out));
    }
    // A generated article: its bytes hash to the stored SHA-256.
    let out = s.run(&["tickets", "show", "10001", "--raw", "1"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let stored = s.sql_i64(&format!(
        "SELECT COUNT(*) FROM articles WHERE id = 1 AND raw_sha256 = '{}'",
        hex(&out.stdout)
    ));
    assert_eq!(stored, 1);
}

#[test]
fn show_raw_of_a_missing_article_names_how_many_there_are() {
    let s = big_store();
    let number = &s.known[0].1;
    let out = s.run(&["tickets", "show", number, "--raw", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = common::stderr(&out);
    assert!(
        err.contains("has 1 article(s)") && err.contains("tickets show"),
        "{err}"
    );
    let out = s.run(&["tickets", "show", "999999999", "--raw", "1"]);
    assert!(common::stderr(&out).contains("no ticket with number 999999999"));
}

#[test]
fn show_attachment_writes_the_decoded_file() {
    let s = big_store();
    let number = &s.known[4].1;
    let out = s.run(&["tickets", "show", number, "--attachment", "1", "1"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(out.stdout, b"\x89PNG\r\n\x1a\n", "the base64 part, decoded");
    let listed = String::from_utf8(s.run(&["tickets", "show", number]).stdout).unwrap();
    assert!(
        listed.contains("Attachment 1: Schäden übersicht.png (image/png, 8 bytes)"),
        "{listed}"
    );
    let out = s.run(&["tickets", "show", number, "--attachment", "1", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(common::stderr(&out).contains("has 1 attachment(s), so there is no attachment 2"));
}

#[tokio::test]
async fn a_raw_mail_that_no_longer_matches_its_sha256_is_refused() {
    let cfg = TestConfig::new(
        &["name = \"known\"\nemail = \"known@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
           password = \"p\"\nticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n".into()],
        "",
    );
    let db = mail2ticket::store::Store::open(&cfg.store).await.unwrap();
    let known = ingest_known(&db).await;
    // One changed byte, as a damaged disk would leave it, in a mail stored the way versions
    // before the compressed store did (in articles.raw).
    let damaged = String::from_utf8_lossy(&known[0].0.raw).replacen("order", "ordex", 1);
    sqlx::query("UPDATE articles SET raw = ? WHERE id = 1")
        .bind(damaged.as_bytes())
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM raw_mails WHERE article_id = 1")
        .execute(db.pool())
        .await
        .unwrap();
    // And a compressed mail cut short.
    sqlx::query(
        "UPDATE raw_mails SET data = substr(data, 1, length(data) / 2) WHERE article_id = 3",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    let out = cfg.run(&["tickets", "show", &known[0].1, "--raw", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing of a damaged mail is written"
    );
    let err = common::stderr(&out);
    assert!(
        err.contains("does not match the SHA-256") && err.contains("restore it from a backup"),
        "{err}"
    );
    let intact = cfg.run(&["tickets", "show", &known[1].1, "--raw", "1"]);
    assert_eq!(intact.stdout, known[1].0.raw);
    let cut = cfg.run(&["tickets", "show", &known[2].1, "--raw", "1"]);
    assert_eq!(cut.status.code(), Some(1));
    assert!(
        cut.stdout.is_empty(),
        "nothing of a damaged mail is written"
    );
    let err = common::stderr(&cut);
    assert!(
        err.contains("cannot be decoded") || err.contains("does not match the SHA-256"),
        "{err}"
    );
}

#[test]
fn a_store_of_the_generated_size_was_built() {
    let s = big_store();
    assert_eq!(
        s.sql_i64("SELECT COUNT(*) FROM articles"),
        GENERATED as i64 + 7
    );
    assert_eq!(
        s.sql_i64("SELECT COUNT(*) FROM articles_fts WHERE articles_fts MATCH 'koln'"),
        1,
        "the full-text index covers the ingested mails"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_fetched_over_imap_is_found_and_given_back_byte_for_byte() {
    let lab = Lab::get();
    let user = lab.fresh_user("find");
    let mail = common::mails::varied(4, &user, "find-lab");
    lab.append(&user, "INBOX", std::slice::from_ref(&mail.raw))
        .await;
    let cfg = TestConfig::new(
        &[common::imap_account(
            lab,
            "support",
            &user,
            "starttls",
            "action = \"delete\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    let out = cfg.run(&[
        "tickets",
        "find",
        "--json",
        "--from",
        "customer@example.test",
        "Anhang",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["account"], "support");
    assert_eq!(hits[0]["message_id"], mail.message_id.as_str());
    let number = hits[0]["number"].as_str().unwrap();
    let article = hits[0]["article"].to_string();

    let eml = cfg.run(&["tickets", "show", number, "--raw", &article]);
    assert!(eml.status.success(), "{}", common::stderr(&eml));
    assert_eq!(
        eml.stdout, mail.raw,
        "the .eml is the mail as it was in the mailbox"
    );
    let png = cfg.run(&["tickets", "show", number, "--attachment", &article, "1"]);
    assert_eq!(png.stdout, b"\x89PNG\r\n\x1a\n");
}

#[tokio::test]
async fn a_store_written_before_full_text_search_gets_its_mails_indexed_when_opened() {
    let cfg = TestConfig::new(
        &["name = \"known\"\nemail = \"known@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
           password = \"p\"\nticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n".into()],
        "",
    );
    // The mails as the code before migration 0004 wrote them: their text readable in
    // `text_body` (migration 0022 compressed it), no full-text index. Then both steps are undone
    // exactly, so opening the store runs them again, in order.
    let db = mail2ticket::store::Store::open(&cfg.store).await.unwrap();
    let known = ingest_known(&db).await;
    for (i, (mail, _)) in known.iter().enumerate() {
        let text = mail2ticket::ingest::parse::parse(&mail.raw).text;
        sqlx::query("UPDATE articles SET text_body = ?, text_zstd = NULL WHERE source_key = ?")
            .bind(text)
            .bind(format!("imap:INBOX:1:{}", i + 1))
            .execute(db.pool())
            .await
            .unwrap();
    }
    sqlx::raw_sql(
        "DROP TRIGGER articles_fts_insert; DROP TRIGGER articles_fts_delete; \
         DROP TRIGGER articles_fts_update; DROP TABLE articles_fts; \
         DROP INDEX tickets_created; DROP INDEX tickets_account_created; \
         DROP INDEX tickets_status_created; DROP INDEX tickets_type_created; \
         DROP INDEX articles_from; DROP INDEX articles_from_domain; \
         ALTER TABLE articles DROP COLUMN text_zstd; \
         DELETE FROM _sqlx_migrations WHERE version IN (4, 22);",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;

    let out = cfg.run(&["tickets", "find", "--json", "koln"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(strs(&hits, "number"), [known[1].1.as_str()]);
}
