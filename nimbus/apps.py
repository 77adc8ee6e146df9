from django.apps import AppConfig


class NimbusConfig(AppConfig):
    name = "nimbus"
    verbose_name = "Nimbus"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import datamodel

        # Importing conf connects its setting_changed receiver (override_settings(NIMBUS=...)).
        # key_usage connects its request_finished receiver and its exit flush.
        from . import addresses, checks, conf, key_usage  # noqa: F401  (checks register themselves)
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        datamodel.set_provider(conf.get_connection)
