"""A plain Django model equivalent to ``nimbus.models.Page``, and a plain DRF ModelViewSet over it:
the baselines the benchmarks compare with."""
