-- Several instances on one store: an account is polled only by the instance holding its lease
-- (see src/lease.rs). One row per account that was ever leased.
CREATE TABLE account_leases (
    account     TEXT PRIMARY KEY NOT NULL,
    -- The holder: host:pid:random of the instance, new at every start.
    owner       TEXT NOT NULL,
    -- Incremented at every acquisition; the ingestion transaction checks owner and fence, so a
    -- holder that lost the lease cannot commit anything for the account afterwards.
    fence       INTEGER NOT NULL,
    -- RFC 3339 UTC with milliseconds (sorts as text); past it, any instance may take over.
    expires_at  TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);
