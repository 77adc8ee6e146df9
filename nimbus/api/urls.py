from collections.abc import Callable
from typing import Any

from django.urls import re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.viewsets import ViewSetMixin

from . import projects, views
from .routing import path

app_name = "api"

ID = "<str:project_id>"
PAGE = "<str:page_id>"


def actions(viewset: type[ViewSetMixin], **mapping: str) -> Callable[..., Any]:
    """The view that routes these HTTP methods to these actions of ``viewset``."""
    return viewset.as_view(mapping)


urlpatterns = [
    path("", views.APIRootView.as_view(), name="root"),
    path("status/", views.StatusView.as_view(), name="status"),
    path("me/", views.MeView.as_view(), name="me"),
    path("keys/", actions(views.ApiKeyViewSet, get="list", post="create"), name="keys"),
    path("keys/<str:key_id>/", actions(views.ApiKeyViewSet, delete="destroy"), name="key"),
    path("system/initialize/", views.InitializeView.as_view(), name="initialize"),
    path(
        "projects/",
        actions(projects.ProjectViewSet, get="list", post="create"),
        name="projects",
    ),
    path(
        f"projects/{ID}/",
        actions(projects.ProjectViewSet, get="retrieve", patch="partial_update", delete="destroy"),
        name="project",
    ),
    path(
        f"projects/{ID}/restore/",
        actions(projects.ProjectViewSet, post="restore"),
        name="project-restore",
    ),
    path(
        f"projects/{ID}/pages/",
        actions(projects.PageViewSet, get="list", post="create"),
        name="pages",
    ),
    path(
        f"projects/{ID}/pages/{PAGE}/",
        actions(projects.PageViewSet, get="retrieve", patch="partial_update", delete="destroy"),
        name="page",
    ),
    path(
        f"projects/{ID}/pages/{PAGE}/restore/",
        actions(projects.PageViewSet, post="restore"),
        name="page-restore",
    ),
    path(
        f"projects/{ID}/pages/{PAGE}/status/",
        actions(projects.PageViewSet, get="status_object", post="set_status"),
        name="page-status",
    ),
    path(
        f"projects/{ID}/pages/{PAGE}/logs/",
        actions(projects.LogViewSet, get="list", post="create"),
        name="page-logs",
    ),
    path(
        f"projects/{ID}/batches/",
        actions(projects.BatchViewSet, get="list", post="create"),
        name="batches",
    ),
    path(
        f"projects/{ID}/batches/<str:batch_id>/",
        actions(projects.BatchViewSet, get="retrieve"),
        name="batch",
    ),
    path(
        f"projects/{ID}/queue/claim/",
        actions(projects.QueueViewSet, post="claim"),
        name="queue-claim",
    ),
    path(
        f"projects/{ID}/queue/{PAGE}/ack/",
        actions(projects.QueueViewSet, post="ack"),
        name="queue-ack",
    ),
    path(
        f"projects/{ID}/queue/{PAGE}/fail/",
        actions(projects.QueueViewSet, post="fail"),
        name="queue-fail",
    ),
    path(
        f"projects/{ID}/queue/{PAGE}/progress/",
        actions(projects.QueueViewSet, post="progress"),
        name="queue-progress",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^", views.not_found, name="not-found"),  # last: any other URL under /api/
]
