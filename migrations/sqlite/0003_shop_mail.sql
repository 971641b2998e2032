-- A shop's everyday mail: delivery reports of our replies, and one message in several accounts.
-- Additive only: stores written before this migration keep working unchanged.

-- An article that is a delivery report (bounce) of one of our automatic replies.
ALTER TABLE articles ADD COLUMN is_bounce INTEGER NOT NULL DEFAULT 0;

-- When a delivery report for this reply arrived (NULL: none). Kept apart from `status`, which
-- says what our SMTP server answered; a bounce comes later and from elsewhere.
ALTER TABLE outbox ADD COLUMN bounced_at TEXT;
CREATE INDEX outbox_bounced ON outbox (bounced_at) WHERE bounced_at IS NOT NULL;

-- One message is one ticket, whichever accounts received it. The key is the sender's address
-- (lower case), a space, and the Message-ID; the first account to store the message owns it.
-- The primary key makes "first one opens it" exact even if two writers raced.
CREATE TABLE messages (
    message_key TEXT    PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    article_id  INTEGER NOT NULL REFERENCES articles (id),
    account     TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
) STRICT;

-- Mails stored before this migration: the oldest article of each message owns it.
INSERT OR IGNORE INTO messages (message_key, ticket_id, article_id, account, created_at)
    SELECT lower(trim(from_email)) || ' ' || message_id, ticket_id, id, account, created_at
    FROM articles WHERE message_id != '' AND trim(from_email) != '' ORDER BY id;

-- Further copies of a stored message, received by other accounts (or twice by one): recorded
-- against the article that opened or joined the ticket, never a second ticket or reply.
CREATE TABLE message_copies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id  INTEGER NOT NULL REFERENCES articles (id),
    account     TEXT    NOT NULL,
    source_key  TEXT    NOT NULL,
    received_at TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    UNIQUE (account, source_key)
) STRICT;
CREATE INDEX message_copies_article ON message_copies (article_id);
