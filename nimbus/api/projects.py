"""Projects and everything inside one: pages, batches, the queue and page logs.

Every object is scoped to its owner: another user's project, page or batch answers 404,
exactly as a missing one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from datamodel import Scope, ValidationError

from .. import conf, lifecycle, workflows
from ..models import Batch, Page, PageLog, PageStatus, Project
from ..models.project import default_settings
from . import responses as shapes
from . import serializers as bodies
from .authentication import acting_user
from .support import EnvelopePagination, IsNimbusUser, int_param, listing, public

PAGE_FILTERS = [
    OpenApiParameter("status", str, enum=["uploaded", "queued", "processing", "done", "failed"]),
    OpenApiParameter("batch_id", str),
    OpenApiParameter("ordering", str, description="created_at, priority, source_path; - reverses"),
    OpenApiParameter("limit", int),
    OpenApiParameter("page", int),
    OpenApiParameter("cursor", str, description="pagination.next_cursor of the previous page"),
]
LIST_PARAMETERS = PAGE_FILTERS[3:]
EXPAND = OpenApiParameter(
    "expand", str, enum=["objects"], description="objects: the full page objects, not their rows"
)
DELETED_FILTER = OpenApiParameter(
    "deleted", str, enum=["only"], description="only: list the soft-deleted ones instead"
)
RESTORE_CONFLICT = OpenApiResponse(
    shapes.Error,
    description="Conflicts with the current state (for a page: its project is deleted)",
)


def with_deleted(request: Request, query: Any) -> Any:
    """``query`` for the ``deleted`` parameter: the soft-deleted objects with ``only``."""
    deleted = request.query_params.get("deleted")
    if deleted in (None, ""):
        return query
    if deleted != "only":
        raise serializers.ValidationError({"deleted": [f"must be 'only', not {deleted!r}"]})
    return query.only_deleted()


class NimbusViewSet(viewsets.ViewSet):
    permission_classes = [IsNimbusUser]
    pagination_class = EnvelopePagination
    #: The request body of each action that takes one (the browsable API's form shows it).
    request_bodies: ClassVar[dict[str, type[serializers.Serializer]]] = {}

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.Serializer:
        """The current action's request body; an empty one for an action that takes none."""
        return self.request_bodies.get(self.action or "", serializers.Serializer)(*args, **kwargs)

    def scope(self) -> Scope:
        """The request's scope: one per request, so a project read at its start stands for
        the objects the request creates in it (``Scope.live``)."""
        scope = getattr(self, "_scope", None)
        if scope is None:
            scope = self._scope = Scope(conf.get_connection(), acting_user(self.request).user_id)
        return scope

    def project(self, project_id: str) -> Project:
        """The caller's project (one KV read), or 404."""
        return Project.objects.bind(self.scope()).get(project_id)


class ProjectViewSet(NimbusViewSet):
    """Projects: list, create, read, update, delete (soft)."""

    request_bodies = {
        "create": bodies.ProjectSerializer,
        "partial_update": bodies.ProjectSerializer,
    }

    @extend_schema(
        parameters=[*LIST_PARAMETERS, DELETED_FILTER], responses=shapes.ProjectListItem(many=True)
    )
    def list(self, request: Request) -> Response:
        query = with_deleted(request, Project.objects.bind(self.scope()).query())
        return listing(request, query, ("created_at", "name"))

    @extend_schema(request=bodies.ProjectSerializer, responses={201: shapes.ProjectObject})
    def create(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = acting_user(request)
        project = Project.objects.bind(self.scope()).create(
            name=body.validated_data["name"],
            settings={**default_settings(), **body.validated_data.get("settings", {})},
            user_email=user.email,
        )
        return Response(public(project.get_data()), status=status.HTTP_201_CREATED)

    @extend_schema(responses=shapes.ProjectObject)
    def retrieve(self, request: Request, project_id: str) -> Response:
        return Response(public(self.project(project_id).get_data()))

    @extend_schema(request=bodies.ProjectSerializer, responses=shapes.ProjectObject)
    def partial_update(self, request: Request, project_id: str) -> Response:
        body = self.get_serializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        project = self.project(project_id)
        if "name" in body.validated_data:
            project.set("name", body.validated_data["name"])
        if "settings" in body.validated_data:
            project.set("settings", {**project.get("settings"), **body.validated_data["settings"]})
        project.save()
        return Response(public(project.get_data()))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, project_id: str) -> Response:
        workflows.delete_project(self.scope(), project_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: shapes.ProjectObject, 409: RESTORE_CONFLICT})
    def restore(self, request: Request, project_id: str) -> Response:
        """Undo a project's delete, with what that delete took with it (its pages, batches,
        status objects, logs and queue; pages deleted on their own before stay deleted), its
        usage counted again. 404 if the project is not deleted."""
        project = workflows.restore_project(self.scope(), project_id)
        return Response(public(project.get_data()))


class PageViewSet(NimbusViewSet):
    """Pages of a project: list with filters, create, read the full object, update its own
    fields, move its status, delete and restore."""

    request_bodies = {
        "create": bodies.PageSerializer,
        "partial_update": bodies.PageUpdateSerializer,
        "set_status": bodies.StatusSerializer,
    }

    def page(self, project_id: str, page_id: str) -> Page:
        return Page.objects.bind(self.scope()).get(project_id=project_id, page_id=page_id)

    @extend_schema(
        parameters=[*PAGE_FILTERS, DELETED_FILTER, EXPAND],
        responses=shapes.PageListItem(many=True),
    )
    def list(self, request: Request, project_id: str) -> Response:
        """The project's pages. A live page proves its project live and the caller's (a
        project's delete cascades to its pages), so the project is read only for an empty
        list, or when listing deleted pages."""
        listing_deleted = bool(request.query_params.get("deleted"))
        if listing_deleted:
            self.project(project_id)
        query = Page.objects.bind(self.scope()).query().where("project_id", project_id)
        query = with_deleted(request, query)
        for name in ("status", "batch_id"):
            if request.query_params.get(name):
                try:
                    query = query.where(name, request.query_params[name])
                except ValidationError as exc:  # named as the parameter, not the lookup
                    messages = [message for found in exc.errors.values() for message in found]
                    raise serializers.ValidationError({name: messages}) from exc
        return listing(
            request,
            query,
            ("created_at", "priority", "source_path"),
            expandable=True,
            when_empty=None if listing_deleted else lambda: self.project(project_id),
        )

    @extend_schema(
        request=bodies.PageSerializer,
        responses={
            201: shapes.PageObject,
            200: OpenApiResponse(shapes.PageObject, description="Replaced and queued again"),
        },
    )
    def create(self, request: Request, project_id: str) -> Response:
        """Upload one page (201). A path uploaded before, even if deleted since, is replaced
        and queued afresh (200), as in a batch upload."""
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = self.project(project_id)
        page, created = workflows.upload_page(self.scope(), project, dict(body.validated_data))
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(public(page.get_data()), status=code)

    @extend_schema(responses=shapes.PageObject)
    def retrieve(self, request: Request, project_id: str, page_id: str) -> Response:
        return Response(public(self.page(project_id, page_id).get_data()))

    @extend_schema(request=bodies.PageUpdateSerializer, responses=shapes.PageObject)
    def partial_update(self, request: Request, project_id: str, page_id: str) -> Response:
        """Change the page's priority or extraction (a queued page's queue item takes the
        new priority). Its status changes through ``/status/``; other fields are read-only."""
        body = self.get_serializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        page = lifecycle.edit(self.scope(), project_id, page_id, dict(body.validated_data))
        return Response(public(page.get_data()))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, project_id: str, page_id: str) -> Response:
        lifecycle.delete(self.scope(), project_id, page_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: shapes.PageObject, 409: RESTORE_CONFLICT})
    def restore(self, request: Request, project_id: str, page_id: str) -> Response:
        """Undo a page's delete: it comes back in the status it was deleted in, in its batch
        and (queued or processing) in the queue. 404 if it is not deleted; 409 while its
        project is deleted."""
        page = lifecycle.restore(self.scope(), project_id, page_id)
        return Response(public(page.get_data()))

    @extend_schema(
        request=bodies.StatusSerializer,
        responses={
            200: shapes.PageObject,
            409: OpenApiResponse(shapes.Error, description="Not allowed from the current status"),
        },
    )
    def set_status(self, request: Request, project_id: str, page_id: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        page = lifecycle.set_status(
            self.scope(),
            project_id,
            page_id,
            body.validated_data["status"],
            error=body.validated_data.get("error"),
            current_step=body.validated_data.get("current_step"),
        )
        return Response(public(page.get_data()))

    @extend_schema(responses=shapes.PageStatusObject)
    def status_object(self, request: Request, project_id: str, page_id: str) -> Response:
        """The page's status object (NIMBUS_STATUS): its status with ``processing``
        (started, current step, progress), ``result`` or ``error``."""
        scope = self.scope()
        Page.objects.bind(scope).get(project_id=project_id, page_id=page_id)
        record = PageStatus.objects.bind(scope).get(project_id=project_id, page_id=page_id)
        return Response(public(record.get_data()))


class BatchViewSet(NimbusViewSet):
    """Batches: upload many pages in one request, list, read with the summary."""

    request_bodies = {"create": bodies.BatchUploadSerializer}

    @extend_schema(
        parameters=[*LIST_PARAMETERS, DELETED_FILTER], responses=shapes.BatchListItem(many=True)
    )
    def list(self, request: Request, project_id: str) -> Response:
        self.project(project_id)
        query = Batch.objects.bind(self.scope()).query().where("project_id", project_id)
        query = with_deleted(request, query)
        return listing(request, query, ("created_at",))

    @extend_schema(request=bodies.BatchUploadSerializer, responses={201: shapes.BatchObject})
    def create(self, request: Request, project_id: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = self.project(project_id)
        limit = project.get("settings").get("max_pages_per_batch", bodies.MAX_BATCH_PAGES)
        pages = body.validated_data["pages"]
        if len(pages) > limit:
            raise serializers.ValidationError(
                {"pages": [f"this project takes at most {limit} pages per batch"]}
            )
        batch = workflows.upload_batch(self.scope(), project, pages)
        return Response(public(batch.get_data()), status=status.HTTP_201_CREATED)

    @extend_schema(responses=shapes.BatchObject)
    def retrieve(self, request: Request, project_id: str, batch_id: str) -> Response:
        batch = Batch.objects.bind(self.scope()).get(project_id=project_id, batch_id=batch_id)
        return Response(public(batch.get_data()))


class QueueViewSet(NimbusViewSet):
    """The project's processing queue: claim the next page, then ack or fail it."""

    request_bodies = {
        "claim": bodies.ClaimSerializer,
        "ack": bodies.AckSerializer,
        "fail": bodies.FailSerializer,
        "progress": bodies.ProgressSerializer,
    }

    @extend_schema(
        request=bodies.ClaimSerializer,
        responses={200: shapes.QueueItem, 204: OpenApiResponse(description="Queue empty")},
    )
    def claim(self, request: Request, project_id: str) -> Response:
        """Claim the next page (the body is optional)."""
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.project(project_id)
        item = lifecycle.claim(
            self.scope(), project_id, current_step=body.validated_data.get("current_step")
        )
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(item)

    @extend_schema(request=bodies.AckSerializer, responses=shapes.PageObject)
    def ack(self, request: Request, project_id: str, page_id: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.project(project_id)
        page = lifecycle.ack(
            self.scope(),
            project_id,
            page_id,
            body.validated_data.get("result"),
            optimization=body.validated_data.get("optimization"),
        )
        return Response(public(page.get_data()))

    @extend_schema(request=bodies.FailSerializer, responses=shapes.FailResult)
    def fail(self, request: Request, project_id: str, page_id: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.project(project_id)
        page, retry = lifecycle.fail(
            self.scope(),
            project_id,
            page_id,
            body.validated_data["error"],
            code=body.validated_data.get("code"),
        )
        return Response({"retry": retry, "page": public(page.get_data())})

    @extend_schema(
        request=bodies.ProgressSerializer,
        responses={
            200: shapes.PageStatusObject,
            409: OpenApiResponse(shapes.Error, description="The page is not processing"),
        },
    )
    def progress(self, request: Request, project_id: str, page_id: str) -> Response:
        """Report a processing page's progress (0-100) and current step: its status object
        changes, the page's state does not. 409 unless the page is processing."""
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.project(project_id)
        record = lifecycle.report_progress(self.scope(), project_id, page_id, **body.validated_data)
        return Response(public(record.get_data()))


class LogViewSet(NimbusViewSet):
    """A page's log: list entries (newest last), append one."""

    request_bodies = {"create": bodies.LogEntrySerializer}

    @extend_schema(parameters=LIST_PARAMETERS[:2], responses=shapes.LogEntry(many=True))
    def list(self, request: Request, project_id: str, page_id: str) -> Response:
        scope = self.scope()
        Page.objects.bind(scope).get(project_id=project_id, page_id=page_id)
        log = PageLog.objects.bind(scope).get_or_none(project_id=project_id, page_id=page_id)
        entries = log.get("entries") if log is not None else []
        limit = int_param(request, "limit", 100, 1, 1000)
        page = int_param(request, "page", 1, 1, 1_000_000)
        total = len(entries)
        chunk = entries[(page - 1) * limit : page * limit]
        pages = -(-total // limit)
        return Response(
            {
                "data": chunk,
                "pagination": {
                    "total": total,
                    "limit": limit,
                    "offset": (page - 1) * limit,
                    "page": page,
                    "pages": pages,
                    "has_next": page < pages,
                    "has_prev": page > 1,
                    "next_cursor": None,
                },
            }
        )

    @extend_schema(request=bodies.LogEntrySerializer, responses={201: shapes.LogEntry})
    def create(self, request: Request, project_id: str, page_id: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        scope = self.scope()
        Page.objects.bind(scope).get(project_id=project_id, page_id=page_id)
        entry = workflows.append_log(scope, project_id, page_id, dict(body.validated_data))
        return Response(entry, status=status.HTTP_201_CREATED)
