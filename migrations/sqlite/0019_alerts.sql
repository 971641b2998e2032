-- Alerts to the shop owner (src/alerts): one row per episode of a condition, from the first
-- alert to the "resolved" one. At most one open episode per condition: two instances that see
-- the same condition queue its alert once (the insert that loses does nothing).
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    condition_key TEXT    NOT NULL,            -- what it is about, e.g. account:support
    kind          TEXT    NOT NULL,            -- e.g. login_rejected, quarantined
    account       TEXT,                        -- the account it concerns, if any
    stage         INTEGER NOT NULL DEFAULT 0,  -- e.g. the days left of an expiring secret
    since         TEXT    NOT NULL,            -- when the state began
    detail        TEXT    NOT NULL DEFAULT '', -- what happened, in the server's words
    opened_at     TEXT    NOT NULL,            -- when the first alert was queued
    notified_at   TEXT    NOT NULL,            -- the last alert or reminder queued
    resolved_at   TEXT                         -- when "resolved" was queued
) STRICT;
CREATE UNIQUE INDEX alerts_open ON alerts (condition_key) WHERE resolved_at IS NULL;

-- The outbox carries alerts too: a row without ticket and article, sent by mail or to the
-- webhook (`channel`). SQLite cannot drop a NOT NULL, so the table is copied once.
CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER REFERENCES tickets (id),
    article_id      INTEGER REFERENCES articles (id),
    alert_id        INTEGER REFERENCES alerts (id),
    channel         TEXT    NOT NULL DEFAULT 'mail',   -- mail | webhook
    account         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    message_id      TEXT    NOT NULL UNIQUE,
    message         BLOB    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    sent_at         TEXT,
    bounced_at      TEXT
) STRICT;
INSERT INTO outbox_new (id, ticket_id, article_id, account, recipient, message_id, message, status,
                        attempts, next_attempt_at, last_error, created_at, sent_at, bounced_at)
    SELECT id, ticket_id, article_id, account, recipient, message_id, message, status, attempts,
           next_attempt_at, last_error, created_at, sent_at, bounced_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (channel, status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
CREATE INDEX outbox_bounced ON outbox (bounced_at) WHERE bounced_at IS NOT NULL;
