-- The `[[account.rule]]` that matched an article's mail, as `rule 2 (X-Spam-Flag contains "yes")`;
-- empty when none did (and for every article stored before rules existed).
ALTER TABLE articles ADD COLUMN rule TEXT NOT NULL DEFAULT '';
