-- A cheaper word fold for PostgreSQL's word search (migrations/postgres/0010_cheap_word_fold.sql).
-- SQLite's FTS5 tokenizer folds by itself: nothing to do here, the step exists so that both
-- directories number their steps alike.
SELECT 1;
