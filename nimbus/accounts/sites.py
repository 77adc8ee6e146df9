"""The admin site: Django's, minus the "Recent actions" log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class AdminSite(admin.AdminSite):
    def get_log_entries(self, request: HttpRequest) -> Any:
        """None: the admin is read-only and writes no log entries, and Django's log table joins
        a user table that Nimbus accounts do not have."""
        from django.contrib.admin.models import LogEntry

        return LogEntry.objects.none()
