"""Read-only admin views over every DataModel: a change list from the metadata table (filters,
search, sorting, pagination with totals, soft-deleted toggle) and a detail page showing the full
KV object beside its metadata row, with drift flagged as ``nimbus_sync`` would. Secret fields
(``SECRET_FIELDS``: password hashes) are never shown, searched or sorted on."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth.hashers import identify_hasher
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from datamodel import DataModel, ValidationError
from datamodel.fields import Boolean, Choice, String, Text
from datamodel.repair import compare
from datamodel.sync import project_row
from datastore.sqlbuild import quote_identifier
from nimbus import conf

from .models import PLACEHOLDERS

PER_PAGE = 25
MAX_PAGE = 1_000_000  # a page number the first query asks for (its offset fits in SQL)
FOLD_BYTES = 2048  # JSON values longer than this are folded on the detail page
HIDDEN_COLUMNS = {"_auth"}
# Shown only as whether a value is set (and a password hash's algorithm), on any model.
SECRET_FIELDS = frozenset({"password_hash"})


def _redacted(value: Any) -> str | None:
    """What the admin shows of a secret field's value: never the value itself."""
    if value in (None, ""):
        return None
    try:
        return f"<redacted {identify_hasher(str(value)).algorithm} hash>"
    except ValueError:
        return "<redacted>"


def _shown(name: str, value: Any) -> Any:
    return _redacted(value) if name in SECRET_FIELDS else value


def _display(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class DataModelAdmin(admin.ModelAdmin):
    """Browses one DataModel through the model layer (so it works on D1 as on SQLite)."""

    datamodel: type[DataModel]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name=f"{prefix}_changelist"),
            path("<path:object_id>/", wrap(self.detail_view), name=f"{prefix}_change"),
        ]

    # -- change list ---------------------------------------------------------------------

    def _filters(self) -> list[tuple[str, list[tuple[str, str]]]]:
        meta = self.datamodel._meta
        filters = []
        for name in meta.sync_fields:
            field = meta.fields[name]
            if isinstance(field, Choice):
                filters.append(
                    (name, [(str(choice), str(choice)) for choice in field.choices or ()])
                )
            elif isinstance(field, Boolean):
                filters.append((name, [("true", "yes"), ("false", "no")]))
        return [(name, choices) for name, choices in filters if name not in SECRET_FIELDS]

    def _search_fields(self) -> list[str]:
        meta = self.datamodel._meta
        return [
            name
            for name in meta.sync_fields
            if isinstance(meta.fields[name], String)
            and not isinstance(meta.fields[name], (Choice, Text))
            and not name.startswith("_")
            and name not in SECRET_FIELDS
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        meta = self.datamodel._meta
        params = request.GET
        query = self.datamodel.objects.system().query()
        active: dict[str, str] = {}
        try:
            for name, choices in self._filters():
                value = params.get(name)
                if value in {choice for choice, _ in choices}:
                    typed: Any = (
                        value == "true" if isinstance(meta.fields[name], Boolean) else value
                    )
                    query = query.where(name, typed)
                    active[name] = value
            search = params.get("q", "").strip()
            if search:
                query = query.search(search, self._search_fields())
            deleted = params.get("deleted", "")
            if meta.soft_delete and deleted == "include":
                query = query.include_deleted()
            elif meta.soft_delete and deleted == "only":
                query = query.only_deleted()
            ordering = params.get("o", "")
            if ordering.lstrip("-") in set(meta.sync_fields) - SECRET_FIELDS:
                query = query.order_by(
                    ordering.lstrip("-"), "desc" if ordering.startswith("-") else "asc"
                )
            page_number = max(int(params.get("p", "1") or 1), 1)
            paged = query.limit(PER_PAGE)
            result = paged.page(min(page_number, MAX_PAGE)).list()
            last = max(result.pagination["pages"], 1)
            if page_number > last:  # as Django's Paginator.get_page(): the last page
                page_number = last
                result = paged.page(last).list()
        except (ValueError, ValidationError) as exc:
            raise Http404(f"bad query: {exc}") from exc

        columns = [name for name in meta.sync_fields if name not in HIDDEN_COLUMNS]

        def link(**changes: Any) -> str:
            merged = {key: value for key, value in params.items()}
            merged.update({key: str(value) for key, value in changes.items() if value is not None})
            for key, value in changes.items():
                if value is None:
                    merged.pop(key, None)
            return "?" + urlencode(merged)

        kv_ids = [meta.kv_id(row) for row in result.data]
        rows = [
            {"id": kv_id, "cells": [_display(_shown(column, row[column])) for column in columns]}
            for kv_id, row in zip(kv_ids, result.data, strict=True)
        ]
        headers = []
        for column in columns:
            current = ordering.lstrip("-") == column
            descending = current and ordering.startswith("-")
            headers.append(
                {
                    "name": column,
                    "url": link(
                        o=column if current and descending else f"-{column}" if current else column,
                        p=None,
                    ),
                    "sorted": "descending" if descending else "ascending" if current else "",
                }
            )
        pagination = result.pagination
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{self.opts.verbose_name_plural.capitalize()} ({meta.table})",
            "datamodel": meta,
            "headers": headers,
            "rows": rows,
            "pagination": pagination,
            "previous_url": link(p=page_number - 1) if pagination["has_prev"] else None,
            "next_url": link(p=page_number + 1) if pagination["has_next"] else None,
            "filters": [
                {
                    "name": name,
                    "all_url": link(**{name: None, "p": None}),
                    "active": active.get(name),
                    "choices": [
                        {
                            "label": label,
                            "url": link(**{name: value, "p": None}),
                            "selected": active.get(name) == value,
                        }
                        for value, label in choices
                    ],
                }
                for name, choices in self._filters()
            ],
            "search": search,
            "search_fields": self._search_fields(),
            "soft_delete": meta.soft_delete,
            "deleted": deleted,
            "deleted_links": [
                ("active", link(deleted=None, p=None), deleted == ""),
                ("include deleted", link(deleted="include", p=None), deleted == "include"),
                ("only deleted", link(deleted="only", p=None), deleted == "only"),
            ],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "nimbus_data/change_list.html", context)

    # -- detail --------------------------------------------------------------------------

    def detail_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        meta = self.datamodel._meta
        try:
            instance = self.datamodel.objects.system().get_or_none(object_id, include_deleted=True)
        except (ValueError, TypeError) as exc:
            raise Http404(str(exc)) from exc
        if instance is not None:
            stored = instance.get_data()
            data: dict[str, Any] | None = stored
            pk = meta.row_pk(stored)
        else:
            # A row listed in the change list may have lost its KV object (an orphan): show
            # the row and what repairs it, rather than a 404 behind a listed link.
            data, parts = None, object_id.split(":")
            if len(parts) != len(meta.key_fields):
                raise Http404(f"{meta.name} {object_id!r} does not exist")
            pk = meta.row_pk(dict(zip(meta.key_fields, parts, strict=True)))
        rows = conf.sql_database().execute(
            f"SELECT * FROM {quote_identifier(meta.table)} "
            f"WHERE {quote_identifier(meta.pk_name)} = ?",
            [meta.pk.to_sql(pk)],
        )
        row = rows[0] if rows else None
        if data is None:
            if row is None:
                raise Http404(f"{meta.name} {object_id!r} does not exist in KV")
            state = "orphan"
            expected: dict[str, Any] = {}
        else:
            state = compare(self.datamodel, data, row)
            expected = dict(zip(meta.sync_fields, project_row(meta, data), strict=True))
        metadata = [
            {
                "name": column,
                "value": _display(_shown(column, row.get(column))) if row else "—",
                "expected": (
                    _display(_shown(column, expected[column])) if column in expected else "—"
                ),
                "differs": row is not None and row.get(column) != expected.get(column),
            }
            for column in meta.sync_fields
        ]
        fields = []
        for name, value in (data or {}).items():
            text = json.dumps(_shown(name, value), indent=2, ensure_ascii=False, sort_keys=True)
            fields.append(
                {
                    "name": name,
                    "json": text,
                    "folded": len(text.encode()) > FOLD_BYTES,
                    "size": len(text.encode()),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{self.opts.verbose_name.capitalize()} {object_id}",
            "object_id": object_id,
            "kv_key": f"{meta.kv_class.lower()}:{object_id}",
            "namespace": meta.namespace,
            "table": meta.table,
            "fields": fields,
            "metadata": metadata,
            "state": state,
            "deleted": (data or row or {}).get("deleted_at"),
        }
        return TemplateResponse(request, "nimbus_data/detail.html", context)


for placeholder, datamodel in PLACEHOLDERS.items():
    admin.site.register(
        placeholder, type(f"{datamodel.__name__}Admin", (DataModelAdmin,), {"datamodel": datamodel})
    )
