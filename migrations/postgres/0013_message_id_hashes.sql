-- A store that grows for years: a Message-ID is found by a 64-bit hash of it, not by an index
-- on the text.
--
-- Every new mail's Message-ID lands at a random place of the index that finds it. Once that
-- index is much larger than a batch, each of a batch's inserts dirties a page of its own,
-- written to the WAL at commit and again at the checkpoint: 85 % of what a store of 100,000
-- articles added to each batch's writes (BENCHMARKS.md, "Where a grown store's extra writes
-- go"). An 8-byte key makes the index a quarter of the size, so a batch's inserts share its
-- pages again.
--
-- `hash` is the first 8 bytes of the SHA-256 of `articles.message_id` (UTF-8, without angle
-- brackets), read as a big-endian signed integer; articles without a Message-ID have no row.
-- A lookup compares `articles.message_id` too, so a collision costs a row read, never a wrong
-- answer. mail2ticket fills the table for the articles already stored when it opens the store
-- (in batches, see src/store/message_ids.rs) and drops `articles_message_id` once every
-- article has its row.
CREATE TABLE message_id_hashes (
    hash       BIGINT  NOT NULL,
    article_id BIGINT  NOT NULL REFERENCES articles (id),
    PRIMARY KEY (hash, article_id)
);
