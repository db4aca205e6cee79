"""The explicit form: ``register(Post, urls=lambda post: [...])``.

For people who want to say by hand which pages a model shows up on::

    import freshcache

    freshcache.register(Post, urls=lambda post: [post.get_absolute_url(), "/"])

Every cached page depends on the tag of its path (``freshcache.http.url_tag``), so saving or
deleting a ``Post`` — or changing its many-to-many relations, from either side — invalidates the
pages at those URLs (every host, query string and language variant), on every store, in
addition to whatever the automatic dependency capture already invalidates. When a save changes
the URLs themselves (a new slug), the pages at the old URLs are invalidated too. Call it once,
e.g. in ``AppConfig.ready()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from .http.keys import url_tag
from .invalidation import invalidate_tags

__all__ = ["register"]

UrlsFunction = Callable[[Any], Iterable[str]]
_registered: dict[type[models.Model], UrlsFunction] = {}
_OLD_URLS = "_freshcache_old_urls"


def _tags(urls: Iterable[str]) -> set[str]:
    return {url_tag(str(url)) for url in urls if url}


def _remember_old_urls(sender: type[models.Model], instance: models.Model, **kw: Any) -> None:
    urls = _registered.get(sender)
    if urls is None or instance.pk is None or kw.get("raw"):
        return
    old = sender._default_manager.using(kw.get("using")).filter(pk=instance.pk).first()
    if old is not None:
        instance.__dict__[_OLD_URLS] = _tags(urls(old))


def _saved_or_deleted(sender: type[models.Model], instance: models.Model, **kw: Any) -> None:
    urls = _registered.get(sender)
    if urls is None:
        return
    tags = _tags(urls(instance)) | instance.__dict__.pop(_OLD_URLS, set())
    invalidate_tags(tags, using=kw.get("using"))


def _m2m_changed(sender: type[models.Model], instance: models.Model, **kw: Any) -> None:
    action = kw.get("action", "")
    other: type[models.Model] | None = kw.get("model")
    if action == "pre_clear" and other in _registered and kw.get("reverse") is not None:
        # After a clear the signal no longer says which rows were related: note them now.
        accessor = _accessor(type(instance), sender, other)
        if accessor is not None:
            related = getattr(instance, accessor).all()
            urls = _registered[other]
            instance.__dict__[_OLD_URLS] = set().union(*(_tags(urls(o)) for o in related))
        return
    if not action.startswith("post_"):
        return
    tags: set[str] = set(instance.__dict__.pop(_OLD_URLS, set()))
    concrete = type(instance)._meta.concrete_model
    own = _registered.get(type(instance)) or (_registered.get(concrete) if concrete else None)
    if own is not None:
        tags |= _tags(own(instance))
    pk_set = kw.get("pk_set")
    if other is not None and other in _registered and pk_set:
        for obj in other._default_manager.using(kw.get("using")).filter(pk__in=pk_set):
            tags |= _tags(_registered[other](obj))
    invalidate_tags(tags, using=kw.get("using"))


def _accessor(
    model: type[models.Model], through: type[models.Model], other: type[models.Model]
) -> str | None:
    for field in model._meta.get_fields():
        if field.many_to_many and _through(field) is through and field.related_model is other:
            return field.get_accessor_name() if field.auto_created else field.name  # type: ignore[union-attr]
    return None


def _through(field: Any) -> Any:
    through = getattr(field, "through", None)
    if through is None:
        through = getattr(getattr(field, "remote_field", None), "through", None)
    return through


def register(model: type[models.Model], *, urls: UrlsFunction) -> None:
    """Invalidate the pages at ``urls(instance)`` whenever an instance of ``model`` changes.

    >>> register(Post, urls=lambda post: [post.get_absolute_url(), "/"])
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise TypeError(f"register() takes a model class, not {model!r}")
    _registered[model] = urls
    uid = f"freshcache-register-{model._meta.label_lower}"
    pre_save.connect(_remember_old_urls, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(_saved_or_deleted, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(_saved_or_deleted, sender=model, weak=False, dispatch_uid=uid)
    for field in model._meta.get_fields():
        through = _through(field)
        if field.many_to_many and isinstance(through, type):
            m2m_changed.connect(
                _m2m_changed,
                sender=through,
                weak=False,
                dispatch_uid=f"freshcache-m2m-{through.__module__}.{through.__qualname__}",
            )
