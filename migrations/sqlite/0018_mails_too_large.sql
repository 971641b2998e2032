-- A mail larger than max_message_size is stored by its header alone and stays on the server:
-- `too_large` is then the size of the whole mail in bytes, as the server listed it; 0 for an
-- article that holds its whole mail (every article stored before this migration).
ALTER TABLE articles ADD COLUMN too_large INTEGER NOT NULL DEFAULT 0;
-- Once max_message_size allows such a mail, its whole mail becomes an article of the same ticket:
-- `completes` is then the id of the article that holds its header; NULL otherwise (no foreign
-- key, like processed.article_id).
ALTER TABLE articles ADD COLUMN completes INTEGER;
-- The rows of mails held by their header (outcome 'header-only'): few, and read by the listing of
-- the mails still waiting on the server and by `tickets show` of a header's article.
CREATE INDEX processed_header_only ON processed (article_id) WHERE outcome = 'header-only';
