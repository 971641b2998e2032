-- The whole mission's schema. Rules: STRICT tables, AUTOINCREMENT keys, NOT NULL DEFAULT columns,
-- never repurpose a column (add a new one in a new migration instead). Times are RFC 3339 UTC text.

CREATE TABLE tickets (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    number         TEXT    NOT NULL UNIQUE,           -- the human ticket number, e.g. "10001"
    account        TEXT    NOT NULL,
    ticket_type    TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    subject        TEXT    NOT NULL DEFAULT '',
    customer_email TEXT    NOT NULL DEFAULT '',
    customer_name  TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
) STRICT;

-- One article per stored mail.
CREATE TABLE articles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id     INTEGER NOT NULL REFERENCES tickets (id),
    account       TEXT    NOT NULL,
    source_key    TEXT    NOT NULL,                   -- where it was fetched from (see processed)
    message_id    TEXT    NOT NULL DEFAULT '',        -- without angle brackets
    in_reply_to   TEXT    NOT NULL DEFAULT '',        -- space-separated ids
    refs          TEXT    NOT NULL DEFAULT '',        -- References, space-separated ids
    from_email    TEXT    NOT NULL DEFAULT '',
    from_name     TEXT    NOT NULL DEFAULT '',
    to_addrs      TEXT    NOT NULL DEFAULT '',
    cc_addrs      TEXT    NOT NULL DEFAULT '',
    subject       TEXT    NOT NULL DEFAULT '',
    text_body     TEXT    NOT NULL DEFAULT '',
    html_body     TEXT    NOT NULL DEFAULT '',
    raw           BLOB    NOT NULL,                   -- the message exactly as fetched
    raw_sha256    TEXT    NOT NULL,
    size          INTEGER NOT NULL DEFAULT 0,
    parse_problem TEXT    NOT NULL DEFAULT '',        -- non-empty: flagged as malformed
    is_followup   INTEGER NOT NULL DEFAULT 0,
    reply_note    TEXT    NOT NULL DEFAULT '',        -- auto-reply queued, or why it was suppressed
    received_at   TEXT    NOT NULL,
    created_at    TEXT    NOT NULL
) STRICT;
CREATE INDEX articles_ticket ON articles (ticket_id);
CREATE INDEX articles_message_id ON articles (message_id);
CREATE INDEX articles_account_sha ON articles (account, raw_sha256);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id   INTEGER NOT NULL REFERENCES articles (id),
    filename     TEXT    NOT NULL DEFAULT '',
    content_type TEXT    NOT NULL DEFAULT 'application/octet-stream',
    size         INTEGER NOT NULL DEFAULT 0,
    data         BLOB    NOT NULL
) STRICT;
CREATE INDEX attachments_article ON attachments (article_id);

-- Exactly-once: every source mail that was handled, keyed per account by
--   IMAP: "imap:<folder>:<uidvalidity>:<uid>"   POP3: "pop3:<uidl>"
-- A row is written in the same transaction as the article, so "row exists" = "ticket durable".
CREATE TABLE processed (
    account     TEXT    NOT NULL,
    source_key  TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,                     -- ticket | followup | duplicate | test | oversized
    article_id  INTEGER,                              -- NULL unless a new article was stored
    disposed_at TEXT,                                 -- NULL until moved/deleted on the server
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (account, source_key)
) STRICT;

-- Per mailbox sync state (IMAP: UIDVALIDITY of the folder last seen).
CREATE TABLE mailbox_state (
    account     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (account, folder)
) STRICT;

-- Mails whose storage failed; after 3 failures they are quarantined and skipped.
CREATE TABLE failures (
    account    TEXT    NOT NULL,
    source_key TEXT    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT '',
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (account, source_key)
) STRICT;

-- Automatic replies, queued in the ticket's transaction and delivered by the sender task.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    article_id      INTEGER NOT NULL REFERENCES articles (id),
    account         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    message_id      TEXT    NOT NULL UNIQUE,          -- of the reply; answers thread by it
    message         BLOB    NOT NULL,                 -- the complete RFC 5322 message
    status          TEXT    NOT NULL DEFAULT 'pending', -- pending | sending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    sent_at         TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
