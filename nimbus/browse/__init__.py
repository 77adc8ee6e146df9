"""Django admin over the DataModel metadata tables: browse what the platform holds, read-only,
on any SQL backend (local SQLite or remote D1), through the model layer."""
