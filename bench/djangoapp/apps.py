from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench.djangoapp"
    label = "benchapp"
    default_auto_field = "django.db.models.BigAutoField"
