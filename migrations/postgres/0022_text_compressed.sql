-- An article's text is stored compressed by mail2ticket (src/store/article_text.rs): one zstd
-- frame of its UTF-8 bytes in `text_zstd`, `text_body` left empty. PostgreSQL's own compression
-- (lz4 since 0021) takes only values over about 2 KB, one at a time; BENCHMARKS.md "Storage" has
-- both stores' sizes. Rows written before keep their text in
-- `text_body` (text_zstd NULL); both are read. `words` is written by mail2ticket as before
-- (0020), from the text before compression.
ALTER TABLE articles ADD COLUMN text_zstd bytea;
