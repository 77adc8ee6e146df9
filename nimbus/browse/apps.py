from django.apps import AppConfig


class BrowseConfig(AppConfig):
    name = "nimbus.browse"
    label = "nimbus_data"
    verbose_name = "Nimbus data"
