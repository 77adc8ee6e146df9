"""The query layer: lookups and ``Q`` trees, aggregates, the SQL compiler and ``QuerySet``.

Data flows one way: the query set builds state, the compiler turns it into statements for the
metadata table, and an iterable class turns fetched rows into what the caller asked for
(rows, instances, values). Nothing here imports the model class or the manager.
"""

from .aggregates import Aggregate, Avg, Count, Max, Min, Sum
from .expressions import OrderBy, Q
from .lookups import LOOKUPS, Lookup
from .pagination import Page
from .queryset import OPERATORS, MultipleObjectsReturned, QuerySet

Query = QuerySet  # the earlier name

__all__ = [
    "LOOKUPS",
    "OPERATORS",
    "Aggregate",
    "Avg",
    "Count",
    "Lookup",
    "Max",
    "Min",
    "MultipleObjectsReturned",
    "OrderBy",
    "Page",
    "Q",
    "Query",
    "QuerySet",
    "Sum",
]
