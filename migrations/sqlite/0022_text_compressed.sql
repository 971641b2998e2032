-- An article's text is stored compressed (src/store/article_text.rs): one zstd frame of its UTF-8
-- bytes in `text_zstd`, `text_body` left empty. The text was the largest part of the store (0.66×
-- the raw mail, 10,000 mixed mails; BENCHMARKS.md "Storage"); compressed it is 0.11×. Rows written
-- before keep their text in `text_body` (text_zstd NULL); both are read.
ALTER TABLE articles ADD COLUMN text_zstd BLOB;

-- The full-text index (0004) reads its content from `articles`, which for a compressed row holds
-- no readable text: the program that writes such a row indexes its words in the same
-- transaction (`article_text::index_words`). The triggers keep indexing rows whose text is
-- readable, as before. A compressed row's entries cannot be deleted by SQL (FTS5 needs the
-- indexed text for that): articles are never deleted or rewritten by mail2ticket, and a program
-- that deletes one leaves entries that point nowhere, which `tickets find` passes over (it joins
-- `articles`), rather than the damaged index a wrong 'delete' would leave.
DROP TRIGGER articles_fts_insert;
DROP TRIGGER articles_fts_delete;
DROP TRIGGER articles_fts_update;
CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles WHEN new.text_zstd IS NULL BEGIN
    INSERT INTO articles_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;
CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles WHEN old.text_zstd IS NULL BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
END;
CREATE TRIGGER articles_fts_update AFTER UPDATE OF subject, text_body ON articles
WHEN old.text_zstd IS NULL AND new.text_zstd IS NULL BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
    INSERT INTO articles_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;
