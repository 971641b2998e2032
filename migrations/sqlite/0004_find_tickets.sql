-- Finding tickets in a store of years (`tickets list` and `tickets find`).

-- tickets list pages newest first (created_at DESC, id DESC), optionally narrowed to one
-- account, status or type. Each index ends in created_at (and implicitly the row id), so a page
-- is one backwards range read of LIMIT entries instead of a sort of the whole table.
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_account_created ON tickets (account, created_at);
CREATE INDEX tickets_status_created ON tickets (status, created_at);
CREATE INDEX tickets_type_created ON tickets (ticket_type, created_at);

-- tickets find --from: an exact address or a whole domain, case-insensitively. Queries must
-- spell these expressions exactly as here (see src/store/find.rs) for SQLite to use them.
CREATE INDEX articles_from ON articles (lower(from_email));
CREATE INDEX articles_from_domain ON articles (lower(substr(from_email, instr(from_email, '@') + 1)));

-- tickets find TEXT: full text over subject and body. External content: the index refers to
-- the articles rows by id instead of holding a second copy of every text. remove_diacritics 2
-- folds accents (ü -> u, é -> e), so "Ruckfrage" also finds "Rückfrage"; ß is no accent and stays.
CREATE VIRTUAL TABLE articles_fts USING fts5 (
    subject,
    text_body,
    content = 'articles',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Kept in step by triggers, so every way an article is written (one by one, multi-row, future
-- code) updates the index in the same transaction.
CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;
CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
END;
CREATE TRIGGER articles_fts_update AFTER UPDATE OF subject, text_body ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
    INSERT INTO articles_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;

-- Stores written before this migration: index the articles they already hold.
INSERT INTO articles_fts (articles_fts) VALUES ('rebuild');
