-- On PostgreSQL the daemon now writes the words of `tickets find` itself (see
-- migrations/postgres/0020). A SQLite store's FTS5 index is filled by its triggers as before:
-- nothing changes here; the step keeps both stores' migration numbers alike.
SELECT 1;
