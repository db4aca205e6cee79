"""Every model shape Django allows, for tests/capture/test_model_shapes.py.

Plain models with a custom manager and queryset; proxies (of a plain model, with a filtering
default manager, and of a multi-table child); multi-table inheritance over three levels; an
abstract base; ``db_column`` on the primary key and on keyed columns; a ``GeneratedField``
(Django 5.0+) that is unique; a ``CompositePrimaryKey`` (Django 5.2+); unmanaged models on a
table created by SQL and on another model's table with fewer columns (an unmanaged model on a
view is made at run time by ``view.py``: a view is "not a table" to the log triggers, whose
tests expect none). ``Page`` is the model whose data migration (0002) writes through a historical
version of it, older than the keyed columns migration 0003 adds.
"""

from __future__ import annotations

import django
from django.db import models
from django.db.models.functions import Upper


class Category(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=30, unique=True)

    def __str__(self) -> str:
        return self.name


class PostQuerySet(models.QuerySet["Post"]):
    def titled(self, title: str) -> PostQuerySet:
        return self.filter(title=title)


class PostManager(models.Manager.from_queryset(PostQuerySet)):  # type: ignore[misc]
    pass


class Post(models.Model):
    """The model of issue 9: a foreign key and a unique column besides the primary key."""

    title = models.CharField(max_length=50)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="posts")
    slug = models.CharField(max_length=50, unique=True, null=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="posts")

    objects = PostManager()

    def __str__(self) -> str:
        return self.title


class PostProxy(Post):
    class Meta:
        proxy = True


class VisiblePostManager(models.Manager["VisiblePost"]):
    def get_queryset(self) -> models.QuerySet[VisiblePost]:
        return super().get_queryset().exclude(title__startswith="hidden")


class VisiblePost(Post):
    """A proxy whose default manager filters rows."""

    objects = VisiblePostManager()

    class Meta:
        proxy = True


class Place(models.Model):
    name = models.CharField(max_length=50)
    code = models.CharField(max_length=20, unique=True, null=True)
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, null=True, related_name="places"
    )

    def __str__(self) -> str:
        return self.name


class Shop(Place):
    """A multi-table child with keyed columns of its own and a many-to-many field."""

    title = models.CharField(max_length=50, default="")
    sku = models.CharField(max_length=20, unique=True, null=True)
    supplier = models.ForeignKey(
        Category, on_delete=models.CASCADE, null=True, related_name="supplied_shops"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="shops")


class ShopProxy(Shop):
    class Meta:
        proxy = True


class Kiosk(Shop):
    """A multi-table grandchild."""

    window = models.CharField(max_length=20, unique=True, null=True)
    rating = models.IntegerField(default=0)


class Coded(models.Model):
    code = models.CharField(max_length=20, unique=True, null=True)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="%(class)ss")

    class Meta:
        abstract = True


class Article(Coded):
    """From an abstract base; its only manager is not called ``objects``."""

    title = models.CharField(max_length=50)

    items = models.Manager()


class Renamed(models.Model):
    """``db_column`` everywhere, in mixed case (quoted in SQL)."""

    ident = models.BigAutoField(primary_key=True, db_column="RenamedID")
    title = models.CharField(max_length=50, db_column="TitleText")
    code = models.CharField(max_length=20, unique=True, null=True, db_column="Code")
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, db_column="CatRef", related_name="renamed"
    )


class LegacyItem(models.Model):
    """Unmanaged, on a table created by SQL in migration 0001."""

    title = models.CharField(max_length=50)
    code = models.CharField(max_length=20, unique=True, null=True)
    category = models.ForeignKey(
        Category, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        managed = False
        db_table = "shapes_legacy_item"


class PostSummary(models.Model):
    """Unmanaged, on ``Post``'s table, without its keyed columns ``category`` and ``slug``."""

    title = models.CharField(max_length=50)

    class Meta:
        managed = False
        db_table = "shapes_app_post"


class Locale(models.Model):
    code = models.CharField(max_length=10, unique=True)


class Page(models.Model):
    """Migration 0003 adds ``locale`` and ``code`` after 0002 wrote through the old model."""

    title = models.CharField(max_length=50)
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, related_name="+")
    locale = models.ForeignKey(Locale, on_delete=models.CASCADE, null=True, related_name="+")
    code = models.CharField(max_length=20, unique=True, null=True)


if django.VERSION >= (5, 0):

    class Generated(models.Model):
        """A unique generated column: an UPDATE of ``slug`` changes it in the database."""

        title = models.CharField(max_length=50)
        slug = models.CharField(max_length=20, null=True)
        category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="+")
        upper_slug = models.GeneratedField(
            expression=Upper("slug"),
            output_field=models.CharField(max_length=20, null=True),
            db_persist=True,
            unique=True,
        )


if django.VERSION >= (5, 2):

    class Enrollment(models.Model):
        pk = models.CompositePrimaryKey("category_id", "number")
        category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="+")
        number = models.IntegerField()
        title = models.CharField(max_length=50)
        code = models.CharField(max_length=20, unique=True, null=True)
