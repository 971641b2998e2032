-- PostgreSQL only (see migrations/postgres/0021): SQLite does not compress column values.
SELECT 1;
