-- PostgreSQL translation of migrations/sqlite/0004_find_tickets.sql.
-- Finding tickets in a store of years (`tickets list` and `tickets find`).

CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_account_created ON tickets (account, created_at);
CREATE INDEX tickets_status_created ON tickets (status, created_at);
CREATE INDEX tickets_type_created ON tickets (ticket_type, created_at);

-- tickets find --from: queries spell these expressions exactly as here (src/store/find.rs);
-- PostgreSQL's name for SQLite's instr is strpos.
CREATE INDEX articles_from ON articles (lower(from_email));
CREATE INDEX articles_from_domain ON articles (lower(substr(from_email, strpos(from_email, '@') + 1)));

-- No full-text index: word search (`tickets find TEXT`) is a SQLite store's feature; on
-- PostgreSQL it is refused with an error naming the limitation (see src/store/find.rs).
