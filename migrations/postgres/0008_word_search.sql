-- Word search on PostgreSQL (`tickets find TEXT`, `--subject`): what SQLite's FTS5 table
-- articles_fts (0004) does there. Subject words carry weight A and body words weight B, so a
-- query can ask for subject words alone ('word':A, see src/store/find.rs).

-- Text as FTS5's tokenizer (`unicode61 remove_diacritics 2`) sees it for a SQLite store:
-- lower case, Latin letters with a diacritic as their base letter (`koln` finds `Köln`), and
-- ASCII punctuation as a word break (`4711` finds `order-4711`, `example` finds
-- `kunde@example.com`; PostgreSQL's parser alone would keep `-4711` and the address whole).
-- Queries fold their words with the same function. The 'simple' configuration below does not
-- stem, like FTS5. (The unaccent extension would need CREATE on the database, and a wrapper
-- to be IMMUTABLE; translate needs nothing and does not depend on the database's locale.)
CREATE FUNCTION search_text(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT translate(lower(t),
        'àáâãäåāăąçćĉċčďèéêëēĕėęěĝğġģĥìíîïĩīĭįĵķĺļľñńņňòóôõöōŏőŕŗřśŝşšţťùúûüũūŭůűųŵýÿŷźżž'
            || '!"#$%&''()*+,-./:;<=>?@[\]^_`{|}~',
        'aaaaaaaaacccccdeeeeeeeeegggghiiiiiiiijklllnnnnoooooooorrrssssttuuuuuuuuuuwyyyzzz'
            || '                                ')
$$;

-- A tsvector holds at most 1 MB, so a body is indexed up to its first 100,000 characters: a
-- mail with a novel in it is still stored, and found by the words of its beginning.
--
-- Adding a stored generated column rewrites the table once, under a lock, when this migration
-- runs (at the first start of this version).
ALTER TABLE articles ADD COLUMN words tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', search_text(subject)), 'A')
        || setweight(to_tsvector('simple', search_text(left(text_body, 100000))), 'B')
) STORED;
CREATE INDEX articles_words ON articles USING gin (words);
