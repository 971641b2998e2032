-- The words of `tickets find` (articles.words) are written by the daemon from now on
-- (src/store/word_vector.rs), no longer computed by PostgreSQL for every inserted article:
-- folding and `to_tsvector` were 4.5 s of a 7.8 s store of 10,000 mixed mails, under the write
-- transaction; reading the same words from their text form takes 0.5 s (BENCHMARKS.md,
-- "PostgreSQL against SQLite").
--
-- The daemon writes exactly what the generated expression of migration 0010 gave, so the
-- existing rows keep their words: dropping the expression keeps every value and rewrites
-- nothing. NOT NULL makes an INSERT that forgets the column fail instead of writing an
-- article no word search finds (it reads every row once to check, without a rewrite).
ALTER TABLE articles ALTER COLUMN words DROP EXPRESSION;
ALTER TABLE articles ALTER COLUMN words SET NOT NULL;
