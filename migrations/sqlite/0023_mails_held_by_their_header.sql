-- Each pass asks for the account's mails held by their header alone and not gone from the
-- server (mails too large to fetch; `held_by_header` in src/store/processed.rs). Such rows are
-- few, and leave this index when their mail is stored whole or gone; without it the question
-- went through every processed key of the account.
CREATE INDEX processed_held ON processed (account, source_key)
    WHERE outcome = 'header-only' AND disposed_at IS NULL;
