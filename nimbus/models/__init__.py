"""The Nimbus domain, declared as DataModels (data-structures spec)."""

from .apikey import ApiKey, key_hash
from .batch import Batch
from .email import EmailLookup
from .logs import PageLog
from .page import Page
from .project import Project
from .queue import Queue
from .status import PageStatus
from .user import User

DOMAIN_MODELS = [User, EmailLookup, ApiKey, Project, Page, Batch, Queue, PageStatus, PageLog]

__all__ = [
    "DOMAIN_MODELS",
    "ApiKey",
    "Batch",
    "EmailLookup",
    "Page",
    "PageLog",
    "PageStatus",
    "Project",
    "Queue",
    "User",
    "key_hash",
]
