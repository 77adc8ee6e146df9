"""The model layer: declarative models stored in KV with SQL metadata tables.

Never imports Django. Built on ``datastore``.
"""

from . import fields, ids
from .connection import Connection, get_connection, set_provider
from .deletion import CASCADE, DO_NOTHING, PROTECT, SET_NULL, Collector
from .errors import (
    DeclarationError,
    DeleteConflict,
    DoesNotExist,
    IntegrityError,
    PartialWrite,
    ProtectedError,
    Rejected,
    SyncError,
    ValidationError,
)
from .hooks import HookRegistry
from .initialize import Report, initialize
from .listings import Listing, ListingReport, verify_listings
from .manager import Manager, ScopedManager
from .model import DataModel
from .options import Options
from .query import Avg, Count, Max, Min, MultipleObjectsReturned, Page, Q, Query, QuerySet, Sum
from .registry import registry
from .repair import SyncReport, verify
from .schema import create_statements, create_tables
from .scope import Scope
from .seeds import Seed, SeedError

__all__ = [
    "CASCADE",
    "DO_NOTHING",
    "PROTECT",
    "SET_NULL",
    "Avg",
    "Collector",
    "Connection",
    "Count",
    "DataModel",
    "DeclarationError",
    "DeleteConflict",
    "DoesNotExist",
    "HookRegistry",
    "IntegrityError",
    "Listing",
    "ListingReport",
    "Manager",
    "Max",
    "Min",
    "MultipleObjectsReturned",
    "Options",
    "Page",
    "PartialWrite",
    "ProtectedError",
    "Q",
    "Query",
    "QuerySet",
    "Rejected",
    "Report",
    "Scope",
    "ScopedManager",
    "Seed",
    "SeedError",
    "Sum",
    "SyncError",
    "SyncReport",
    "ValidationError",
    "create_statements",
    "create_tables",
    "fields",
    "get_connection",
    "ids",
    "initialize",
    "registry",
    "set_provider",
    "verify",
    "verify_listings",
]
