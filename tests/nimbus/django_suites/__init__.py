"""Django's own session and cache test suites, copied from the source package of the pinned
Django (requirements.txt), whose wheel ships no tests: ``SessionTestsMixin`` and
``BaseCacheTests`` with what they need. ``tests/nimbus/test_django_suites.py`` runs them against
``nimbus.sessions`` and ``nimbus.cache.KVCache``.

To update them for a new Django, download its source (``pip download --no-binary :all: --no-deps
django==X.Y.Z``) and copy the same classes again from ``tests/sessions_tests/tests.py``,
``tests/cache/tests.py`` and ``tests/cache/models.py``.
"""
