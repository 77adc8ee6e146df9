from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from nimbus.api import routing

urlpatterns = [
    path("", RedirectView.as_view(url="/api/", permanent=False)),
    path("admin/", admin.site.urls),
    routing.path("api/", include("nimbus.api.urls")),  # /api answers as /api/ does
    path("api-auth/", include("rest_framework.urls")),
]
