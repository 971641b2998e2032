-- The merge policy of SQLite's full-text index (migrations/sqlite/0012_fewer_word_index_merges.sql).
-- PostgreSQL's word search is a GIN index, which has no such setting: nothing to do here, the
-- step exists so that both directories number their steps alike.
SELECT 1;
