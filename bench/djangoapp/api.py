"""A plain DRF ModelViewSet over ``OrmPage``, authenticated with DRF's TokenAuthentication."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import pagination, serializers, viewsets
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated

from .models import OrmPage


class OrmPageSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrmPage
        fields = "__all__"


class OrmPagePagination(pagination.LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


class OrmPageViewSet(viewsets.ModelViewSet):
    """``/bench/orm/projects/{project_id}/pages/``: the same list and detail as the Nimbus
    endpoint (``?status=``, ``?ordering=-priority``, ``?limit=``), over the Django ORM."""

    serializer_class = OrmPageSerializer
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    pagination_class = OrmPagePagination
    throttle_classes: list[Any] = []

    def get_queryset(self) -> QuerySet[OrmPage]:
        pages = OrmPage.objects.filter(
            project_id=self.kwargs["project_id"], deleted_at__isnull=True
        )
        if status := self.request.query_params.get("status"):
            pages = pages.filter(status=status)
        if self.request.query_params.get("ordering") == "-priority":
            return pages.order_by("-priority", "page_id")
        return pages.order_by("-created_at", "page_id")
