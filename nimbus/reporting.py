"""What error reports may show: ``DEFAULT_EXCEPTION_REPORTER_FILTER``.

Django's filter hides settings and request headers whose *names* look secret (``SECRET_KEY``,
``HTTP_AUTHORIZATION``, ...). Credentials also travel inside values: ``NIMBUS_KV_URL=
redis://admin:S3cretPw@host`` in the process environment (which runserver copies into every
request's ``META``), a Redis URL in ``NIMBUS['KV']['OPTIONS']``, an API key in a local
variable. This filter masks those too, in settings, ``META``, cookies and traceback variables.
"""

from __future__ import annotations

import os
import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

__all__ = ["NimbusExceptionReporterFilter", "mask_credentials"]

# scheme://userinfo@ : the userinfo is everything up to the authority's last "@".
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*)@")
_API_KEY = re.compile(r"\bsk_live_[0-9a-fA-F]{8,}")


def mask_credentials(text: str, substitute: str = "********") -> str:
    """``text`` with the password of every URL (``scheme://user:pass@host`` becomes
    ``scheme://user:<substitute>@host``; a userinfo without ``:`` is a token, masked whole)
    and every API key (``sk_live_...``) replaced by ``substitute``."""

    def userinfo(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        masked = f"{user}:{substitute}" if colon else substitute
        return f"{match['scheme']}{masked}@"

    if "://" in text:
        text = _URL_USERINFO.sub(userinfo, text)
    if "sk_live_" in text:
        text = _API_KEY.sub(f"sk_live_{substitute}", text)
    return text


class NimbusExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus credentials inside values (see the module docstring) and the
    names of this project's secrets."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|PRIVATE|DSN", flags=re.I
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django's recursion into dicts, lists and tuples calls back here for every item.
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_credentials(cleansed, self.cleansed_substitute)
        return cleansed

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: Any) -> Any:
        return [
            (name, self._mask_value(value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _mask_value(self, value: Any) -> Any:
        # Only plain containers are rebuilt: other types keep their repr.
        if isinstance(value, str):
            return mask_credentials(value, self.cleansed_substitute)
        if type(value) is dict or isinstance(value, type(os.environ)):
            return {key: self._mask_value(item) for key, item in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self._mask_value(item) for item in value)
        return value
