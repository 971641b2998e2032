-- A store that grows for years: the full-text index rewrites its words less often.
--
-- FTS5 writes each batch's words as a new segment and merges segments into larger ones, a
-- level at a time. By default it starts merging a level once it holds 4 segments
-- (`automerge`), so a word is rewritten once per level: a generated store of 1,000,000
-- articles had segments of seven sizes. At 16 it has four.
-- The merges still go in steps, a little with each write. `crisismerge` goes from 16 to 64:
-- once the newest level holds that many segments, FTS5 merges it whole inside the write that
-- added the last one, and every level above that fills up by it. Left at 16 beside an
-- `automerge` of 16, that would be every level's regular merge, and in a store of 1,000,000
-- articles the largest level is hundreds of MB, merged inside one batch's transaction.
--
-- Measured with 10,000 mails into a store of 1,000,000 articles (BENCHMARKS.md, "The FTS5
-- merge policy"): fewer bytes written and a shorter run. A word search reads more segments
-- (33 instead of 15) and took a fraction of a millisecond longer. Both settings live in the
-- index's own config table (`articles_fts_config`), so they hold for every program that writes
-- the store.
INSERT INTO articles_fts (articles_fts, rank) VALUES ('automerge', 16);
INSERT INTO articles_fts (articles_fts, rank) VALUES ('crisismerge', 64);
