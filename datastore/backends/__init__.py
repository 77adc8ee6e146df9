"""Backends. Import the one you need (``datastore.backends.sqlite``, ``...redis``): each module
imports only its own client library."""
