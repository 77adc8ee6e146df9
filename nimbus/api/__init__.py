"""The Nimbus REST API (Django REST framework)."""
