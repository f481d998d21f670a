"""The store: the database schema, engine and sessions, and the schema's migrations."""
