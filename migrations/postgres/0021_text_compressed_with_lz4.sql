-- An article's text and its words are compressed with lz4 instead of PostgreSQL's default pglz
-- when they are stored out of line (values over ~2 KB): pglz was 4 % of the CPU of a backlog of
-- 10,000 mixed mails on PostgreSQL (perf, BENCHMARKS.md "PostgreSQL against SQLite"), lz4
-- takes a fraction of it for a slightly larger result. Existing values stay as they are;
-- PostgreSQL reads both.
--
-- A PostgreSQL built without lz4 (it is an option at build time; Debian's, the Docker image's
-- and the common distributions' have it) refuses the method: then the columns keep pglz.
DO $$
BEGIN
    ALTER TABLE articles
        ALTER COLUMN text_body SET COMPRESSION lz4,
        ALTER COLUMN words SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: articles keep pglz';
END
$$;
