-- Version 1 of the PostgreSQL store: the events and their leases, spreadsheet locks with fencing tokens,
-- flush outcomes, folded entity state, a probe row for writability checks, and the Sheets request log
-- shared by every worker (one request budget per credential).

CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ms BIGINT  NOT NULL,
    endpoint    TEXT    NOT NULL,
    company_id  BIGINT  NOT NULL,
    event_type  TEXT    NOT NULL,
    event_ms    BIGINT,
    body        BYTEA   NOT NULL,
    dedup_key   TEXT    NOT NULL UNIQUE,
    content_key TEXT    NOT NULL,
    subject     TEXT,
    status      TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error  TEXT,
    updated_ms  BIGINT  NOT NULL
);
CREATE INDEX events_pending ON events (company_id, id) WHERE status = 'pending';
CREATE INDEX events_by_status ON events (status, id);
CREATE INDEX events_by_company ON events (company_id, id);
CREATE INDEX events_by_lease_owner ON events (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX untimed_by_subject ON events (company_id, subject, id) WHERE event_ms IS NULL;

CREATE TABLE locks (
    name     TEXT PRIMARY KEY,
    owner    TEXT   NOT NULL,
    until_ms BIGINT NOT NULL,
    token    BIGINT NOT NULL
);

CREATE TABLE flushes (
    spreadsheet_id TEXT PRIMARY KEY,
    company_ids    TEXT NOT NULL,
    last_ok_ms     BIGINT,
    last_error     TEXT,
    last_error_ms  BIGINT
);

CREATE TABLE entity_state (
    kind       TEXT   NOT NULL,
    company_id BIGINT NOT NULL,
    entity_id  BIGINT NOT NULL,
    state      BYTEA  NOT NULL,
    PRIMARY KEY (kind, company_id, entity_id)
);

CREATE TABLE probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms BIGINT NOT NULL
);

CREATE TABLE sheets_requests (
    credential TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    sent_ms    BIGINT NOT NULL
);
CREATE INDEX sheets_requests_by_time ON sheets_requests (credential, kind, sent_ms);
