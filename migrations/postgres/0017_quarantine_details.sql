-- What a mail whose storage failed looked like, so that `mail2ticket quarantine list` and the
-- accounts page can name it without the server: its sender and subject (decoded, control
-- characters replaced, at most 200 characters), its size in bytes, and when it first failed.
-- Rows written before this migration keep '' / 0 and first_failed_at NULL.
ALTER TABLE failures ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE failures ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE failures ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE failures ADD COLUMN first_failed_at TEXT;
