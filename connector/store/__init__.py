"""The store: the durable inbox of events, their claims, the spreadsheet locks, entity state and flush
records, behind one protocol per role."""
