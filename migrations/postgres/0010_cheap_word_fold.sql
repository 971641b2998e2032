-- search_text() (0008) folded with translate() over a list of 110 letters and signs: PostgreSQL
-- compares each character of the text with every entry of the list, 3.9 ms per article of the
-- benchmark's mixed corpus, evaluated by every INSERT for the words column and the subject index
-- (BENCHMARKS.md, "Word search folding on PostgreSQL"). This one folds the same way from Unicode
-- decomposition: 0.47 ms.
--
-- As FTS5's tokenizer (`unicode61 remove_diacritics 2`) folds for a SQLite store:
--   * lower case;
--   * a Latin letter with diacritics is its base letter (`koln` finds `Köln`, `nguyen` finds
--     `Nguyễn`): decomposed (NFD), the marks FTS5 removes are dropped where they follow a letter
--     a-z, and what is left is composed again (NFC), so that a Cyrillic or Greek letter keeps its
--     mark (й stays й, as in FTS5); ß, ø, æ and ł have no decomposition and stay;
--   * ASCII punctuation is a word break (`4711` finds `order-4711`, `example` finds
--     `kunde@example.com`).
-- Composing again is skipped when the text is composed already (IS NFC NORMALIZED is a quick
-- check; NFC itself would cost 0.4 ms per article); OFFSET 0 keeps the planner from copying the
-- decomposed text into both branches, which would decompose it twice.
--
-- Where it still differs from FTS5 (tests/postgres_store.rs checks each letter against FTS5):
-- FTS5 folds case with its own table, which also maps ſ, ẛ, ς and the Greek symbol letters
-- (ϐ ϑ ϕ ϖ ϰ ϱ ϵ) to s, σ and plain letters, where lower() leaves them; FTS5 keeps ǡ; and text
-- that is not in composed form comes out composed (a CJK compatibility ideograph as its unified
-- one, U+0374 as U+02B9), where FTS5 keeps the code point, and drops a mark typed after a
-- non-Latin letter. The same fold applies to the query, so PostgreSQL finds such words as
-- they are typed.
CREATE OR REPLACE FUNCTION search_text(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT regexp_replace(
        CASE WHEN bare IS NFC NORMALIZED THEN bare ELSE normalize(bare, NFC) END,
        '[!-/:-@[-`{-~]', ' ', 'g')
    FROM (
        SELECT regexp_replace(normalize(lower(t), NFD),
            '([a-z])[\u0300-\u0304\u0306-\u030c\u030f\u0311\u031b\u0323-\u0328\u032d\u032e\u0330\u0331]+',
            '\1', 'g') AS bare
        OFFSET 0
    ) decomposed
$$;

-- Rows written before were folded by the old function, which left many Latin letters as they
-- were (ǎ, ș, ț, ạ and the rest of Vietnamese, decomposed umlauts): their words are derived
-- again. Dropping the generated column and adding it back rewrites the table once, which also
-- rebuilds every index on it, articles_subject_words among them, with the new function. It
-- runs under a lock at the first start of this version: 14.5 s for the 10,000 articles of the
-- benchmark's mixed corpus on the lab's PostgreSQL (2 shared cores), so about 2.5 minutes per
-- 100,000 articles, during which nothing is stored (mail waits on the server; nothing is lost).
ALTER TABLE articles DROP COLUMN words;
ALTER TABLE articles ADD COLUMN words tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', search_text(subject))
        || to_tsvector('simple', search_text(left(text_body, 100000)))
) STORED;
CREATE INDEX articles_words ON articles USING gin (words);
