-- A store that grows for years: the index that finds the same raw bytes again covers only the
-- articles that have no message key.
--
-- A mail with a sender and a Message-ID (and no parse problem) is found again by its key in
-- `messages`, which also catches a byte-identical copy. Only the rest (no Message-ID, no
-- sender, or malformed) needs finding by SHA-256. Indexing every article by a random hash cost
-- one page write per new mail once the store is large, the largest part of what a store of
-- 100,000 articles added to each batch (BENCHMARKS.md, "Growth"). The predicate is the one
-- `message_key` (src/ingest/same_message.rs) applies, spelt exactly so in the lookup
-- (`stored_numbers` in src/store/ingest.rs) for the planner to use this index.
DROP INDEX articles_account_sha;
CREATE INDEX articles_account_sha_keyless ON articles (account, raw_sha256)
    WHERE trim(message_id) = '' OR trim(from_email) = '' OR parse_problem != '';
