-- PostgreSQL translation of migrations/sqlite/0009_compact_store.sql: raw mail compressed in a
-- table of its own, decoded attachments once per distinct content. Additive: rows written before
-- keep their bytes where they are until `mail2ticket store compact` moves them, batch by batch.

-- The raw mail of an article, compressed. `codec` says how `data` decodes to the bytes whose
-- SHA-256 is articles.raw_sha256: 'zstd' (one zstd frame). An article with a row here has an
-- empty articles.raw; one without (written before this migration, not compacted yet) still has
-- its bytes in articles.raw.
CREATE TABLE raw_mails (
    article_id BIGINT  PRIMARY KEY REFERENCES articles (id),
    codec      TEXT    NOT NULL,
    data       BYTEA   NOT NULL
);
-- The frames are compressed already: PostgreSQL's own TOAST compression would only cost time.
ALTER TABLE raw_mails ALTER COLUMN data SET STORAGE EXTERNAL;

-- Decoded attachment contents, once per distinct SHA-256. An attachment row names its content
-- here; '' means its bytes are still in attachments.data (written before this migration, not
-- compacted yet).
CREATE TABLE attachment_contents (
    sha256 TEXT  PRIMARY KEY,
    data   BYTEA NOT NULL
);
ALTER TABLE attachments ADD COLUMN content_sha256 TEXT NOT NULL DEFAULT '';
