from django.db import models


class Item(models.Model):
    """A plain row for the core tests."""

    name = models.CharField(max_length=50)
    value = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name
