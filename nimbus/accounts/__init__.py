"""One account system: a Nimbus user (the ``USER`` DataModel) is the account everywhere.

Users sign in to ``/admin/`` and to the browsable API (``/api-auth/login/``) with their email
and password through ``backends.NimbusBackend``; Django sees them as ``models.Account``, the
auth user model (``AUTH_USER_MODEL``), which has no table of its own: it is built from the USER
record and writes back to it. ``is_admin`` makes a user staff, superuser and a Nimbus admin;
nothing else does. ``manage.py createsuperuser`` creates a Nimbus admin and ``changepassword``
changes a Nimbus user's password, both through Django's password validators.
"""
