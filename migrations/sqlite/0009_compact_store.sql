-- A store that grows for years: raw mail compressed in a table of its own, decoded attachments
-- once per distinct content. Additive: rows written before keep their bytes where they are until
-- `mail2ticket store compact` moves them, batch by batch.

-- The raw mail of an article, compressed. `codec` says how `data` decodes to the bytes whose
-- SHA-256 is articles.raw_sha256: 'zstd' (one zstd frame). An article with a row here has an
-- empty articles.raw; one without (written before this migration, not compacted yet) still has
-- its bytes in articles.raw. Apart from the articles rows, so the rows that lookups and lists
-- read are not interleaved with kilobytes of mail each.
CREATE TABLE raw_mails (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id),
    codec      TEXT    NOT NULL,
    data       BLOB    NOT NULL
) STRICT;

-- Decoded attachment contents, once per distinct SHA-256 (the same logo in every mail is stored
-- once). An attachment row names its content here; '' means its bytes are still in
-- attachments.data (written before this migration, not compacted yet).
CREATE TABLE attachment_contents (
    sha256 TEXT PRIMARY KEY,
    data   BLOB NOT NULL
) STRICT;
ALTER TABLE attachments ADD COLUMN content_sha256 TEXT NOT NULL DEFAULT '';
