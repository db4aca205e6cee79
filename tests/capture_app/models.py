"""Models for the capture tests: the relation shapes peers' invalidation got wrong.

Multi-table inheritance (Place -> Restaurant), a proxy, generic relations, an m2m through a
custom model, a nullable self-referencing foreign key with SET_NULL, a to_field foreign key, a
UUID key and a volatile counter.
"""

import uuid

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Place(models.Model):
    name = models.CharField(max_length=50)
    city = models.CharField(max_length=50, default="")

    def __str__(self) -> str:
        return self.name


class Restaurant(Place):
    serves_pizza = models.BooleanField(default=False)
    rating = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class PizzaPlace(Restaurant):
    class Meta:
        proxy = True


class Note(models.Model):
    """Attached to anything through a generic foreign key."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.text


class Group(models.Model):
    name = models.CharField(max_length=50)
    code = models.SlugField(unique=True)
    notes = GenericRelation(Note)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    hits = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class Person(models.Model):
    name = models.CharField(max_length=50)
    groups = models.ManyToManyField(Group, through="Membership", related_name="members")
    group_by_code = models.ForeignKey(
        Group, to_field="code", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    person = models.ForeignKey(Person, on_delete=models.CASCADE)
    group = models.ForeignKey(Group, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")

    def __str__(self) -> str:
        return f"{self.person_id}@{self.group_id}"


class Token(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    owner = models.ForeignKey(Person, null=True, on_delete=models.CASCADE)
    label = models.CharField(max_length=20)

    def __str__(self) -> str:
        return self.label
