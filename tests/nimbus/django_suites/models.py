# Copied from Django 5.2.19 (its source package), tests/cache/models.py: the whole file,
# unchanged; the one change: Poll names its app label, so that it can be defined before its app
# is installed.
# Django is Copyright (c) Django Software Foundation and individual contributors, under the
# BSD 3-clause license in LICENSE beside this file. Excluded from this project's formatting and
# lint (pyproject.toml), so it stays comparable with the original line by line.
from django.db import models
from django.utils import timezone


def expensive_calculation():
    expensive_calculation.num_runs += 1
    return timezone.now()


class Poll(models.Model):
    question = models.CharField(max_length=200)
    answer = models.CharField(max_length=200)
    pub_date = models.DateTimeField("date published", default=expensive_calculation)

    class Meta:
        app_label = "django_suites"
