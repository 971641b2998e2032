-- The accounts page shows each account's mails of today: an index on the time an article was
-- stored keeps that count to today's rows instead of a scan of every article.
CREATE INDEX articles_created ON articles (created_at);
