"""Invalidation by hand: when blog data changes, bump the tags the fragments depend on.

These receivers mirror the ``depends_on()`` calls in ``fragments.py``. They see writes made
through model ``save()``/``delete()`` and many-to-many managers (the admin, the comment form,
the shell), not ``QuerySet.update()`` or raw SQL: freshcache's automatic write capture will
cover those and make this module unnecessary. ``invalidate()`` defers the bumps to commit.
"""

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver

from blog.fragments import post_comments_tag, post_tags_tag
from blog.models import Author, Comment, Post, Tag
from freshcache import invalidate


@receiver(pre_save, sender=Comment)
def remember_comment_post(sender: type[Comment], instance: Comment, **kwargs: Any) -> None:
    # A comment moved to another post (in the admin) leaves the old post's list stale too,
    # and the old post is only known before the row is overwritten. New comments cost nothing.
    if instance._state.adding or instance.pk is None:
        return
    instance._blog_previous_post_id = (  # type: ignore[attr-defined]
        Comment.objects.filter(pk=instance.pk).values_list("post_id", flat=True).first()
    )


@receiver(post_save, sender=Comment)
@receiver(post_delete, sender=Comment)
def comment_changed(sender: type[Comment], instance: Comment, **kwargs: Any) -> None:
    post_ids = {instance.post_id, getattr(instance, "_blog_previous_post_id", None)}
    # The Comment table tag: post lists show comment counts.
    invalidate(instance, Comment, *(post_comments_tag(pk) for pk in post_ids if pk is not None))


@receiver(post_save, sender=Post)
@receiver(post_delete, sender=Post)
def post_changed(sender: type[Post], instance: Post, **kwargs: Any) -> None:
    invalidate(instance, Post)


@receiver(post_save, sender=Author)
@receiver(post_delete, sender=Author)
def author_changed(sender: type[Author], instance: Author, **kwargs: Any) -> None:
    invalidate(instance, Author)


@receiver(post_save, sender=Tag)
@receiver(post_delete, sender=Tag)
def tag_changed(sender: type[Tag], instance: Tag, **kwargs: Any) -> None:
    invalidate(instance, Tag)


@receiver(m2m_changed, sender=Post.tags.through)
def post_tags_changed(
    sender: type[Any],
    instance: Post | Tag,
    action: str,
    reverse: bool,
    pk_set: set[int] | None,
    **kwargs: Any,
) -> None:
    if action == "pre_clear" and reverse:
        # tag.posts.clear(): which posts lose the tag is only known before the rows go.
        instance._blog_cleared_post_ids = set(  # type: ignore[attr-defined]
            instance.posts.values_list("pk", flat=True)  # type: ignore[union-attr]
        )
        return
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if action != "post_clear" and not pk_set:
        return  # Django reports adds of rows that already existed as an empty set
    if not reverse:
        post_ids: set[int] = {instance.pk}
    elif action == "post_clear":
        post_ids = instance.__dict__.pop("_blog_cleared_post_ids", set())
    else:
        post_ids = set(pk_set or ())
    # Every post list and the tag cloud depend on the Tag table tag; each article on its own
    # post-tags tag.
    invalidate(Tag, *(post_tags_tag(pk) for pk in post_ids))
