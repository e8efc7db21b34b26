-- Version 2: events by receive time, for the console's events-per-minute chart (it reads the last minutes
-- only, as the SQLite store's index of the same name lets it).

CREATE INDEX events_by_received ON events (received_ms);
