-- Word search on PostgreSQL (migrations/postgres/0008_word_search.sql). A SQLite store has had
-- its full-text index since 0004: nothing to do here, the step exists so that both directories
-- number their steps alike.
SELECT 1;
