from django.urls import path

from bench.djangoapp.api import OrmPageViewSet
from nimbus.urls import urlpatterns as nimbus_urlpatterns

urlpatterns = [
    *nimbus_urlpatterns,
    path(
        "bench/orm/projects/<str:project_id>/pages/",
        OrmPageViewSet.as_view({"get": "list", "post": "create"}),
        name="orm-pages",
    ),
    path(
        "bench/orm/projects/<str:project_id>/pages/<str:pk>/",
        OrmPageViewSet.as_view({"get": "retrieve"}),
        name="orm-page",
    ),
]
