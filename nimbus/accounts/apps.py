from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AccountsConfig(AppConfig):
    name = "nimbus.accounts"
    label = "nimbus_accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .models import ensure_table

        post_migrate.connect(ensure_table, sender=self)


class AdminConfig(DjangoAdminConfig):
    """``django.contrib.admin`` on the Nimbus admin site, without the Groups page: permissions
    come from a user's ``is_admin`` alone, so groups would grant nothing."""

    default_site = "nimbus.accounts.sites.AdminSite"

    def ready(self) -> None:
        super().ready()
        from django.contrib import admin
        from django.contrib.auth.models import Group

        if admin.site.is_registered(Group):
            admin.site.unregister(Group)
