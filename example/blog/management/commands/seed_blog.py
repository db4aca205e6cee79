"""``manage.py seed_blog``: fill the blog with deterministic demo data.

Post number ``i`` is always the same post (its own ``Random`` is seeded with the seed and
``i``), so the command is idempotent and additive: running it again creates nothing, and
``--posts 300`` after the default 30 adds posts 31 to 300. ``--flush`` starts over.
Rows are written with ``bulk_create`` so benchmark-sized blogs seed in seconds.
"""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils.text import slugify

from blog import lorem
from blog.models import Author, Comment, Post, Tag

# A fixed start, not "now": the same seed must give the same dates.
FIRST_POST_AT = datetime(2024, 1, 8, 9, 0, tzinfo=UTC)
BATCH_SIZE = 1000


class Command(BaseCommand):
    help = "Create demo authors, tags, posts and comments (deterministic; idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--posts", type=int, default=30, help="number of posts (30)")
        parser.add_argument(
            "--comments-per-post", type=int, default=5, help="average comments per post (5)"
        )
        parser.add_argument("--seed", type=int, default=2009, help="random seed (2009)")
        parser.add_argument(
            "--flush", action="store_true", help="delete all blog data before seeding"
        )
        parser.add_argument(
            "--no-admin", action="store_true", help="do not create the demo admin user"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["posts"] < 0 or options["comments_per_post"] < 0:
            self.stderr.write("--posts and --comments-per-post must not be negative.")
            raise SystemExit(2)
        with transaction.atomic():
            if options["flush"]:
                self._flush()
            authors = self._ensure(Author, [(name, {"bio": bio}) for name, bio in lorem.AUTHORS])
            tags = self._ensure(Tag, [(name, {}) for name in lorem.TAGS])
            posts, comments = self._create_posts(
                options["posts"], options["comments_per_post"], options["seed"], authors, tags
            )
        self.stdout.write(
            f"Blog seeded: {len(authors)} authors, {len(tags)} tags, {posts} new posts, "
            f"{comments} new comments ({Post.objects.count()} posts in all)."
        )
        if not options["no_admin"]:
            self._ensure_admin()

    def _flush(self) -> None:
        # Children first (the foreign keys); freshcache invalidates what read these rows.
        for model in (Comment, Post, Tag, Author):
            model.objects.all().delete()
        self.stdout.write("Flushed all blog data.")

    def _ensure(self, model: type[Author] | type[Tag], rows: list[tuple[str, dict]]) -> list:
        # ignore_conflicts keeps a second run from failing on the unique slugs.
        model.objects.bulk_create(
            [model(name=name, slug=slugify(name), **extra) for name, extra in rows],
            ignore_conflicts=True,
        )
        by_slug = model.objects.in_bulk([slugify(name) for name, _ in rows], field_name="slug")
        return [by_slug[slugify(name)] for name, _ in rows]

    def _create_posts(
        self, count: int, comments_per_post: int, seed: int, authors: list, tags: list
    ) -> tuple[int, int]:
        planned = [self._plan_post(i, seed, authors, tags) for i in range(count)]
        existing = set(
            Post.objects.filter(slug__in=[p.slug for p, _, _ in planned]).values_list(
                "slug", flat=True
            )
        )
        new = [plan for plan in planned if plan[0].slug not in existing]
        if not new:
            return 0, 0
        Post.objects.bulk_create([post for post, _, _ in new], batch_size=BATCH_SIZE)
        # Read the ids back rather than rely on the backend returning them from the INSERT.
        ids = dict(
            Post.objects.filter(slug__in=[p.slug for p, _, _ in new]).values_list("slug", "pk")
        )
        links, comments = [], []
        for post, post_tags, rng in new:
            post.pk = ids[post.slug]
            links += [Post.tags.through(post_id=post.pk, tag_id=tag.pk) for tag in post_tags]
            comments += self._plan_comments(post, comments_per_post, rng)
        Post.tags.through.objects.bulk_create(links, batch_size=BATCH_SIZE)
        Comment.objects.bulk_create(comments, batch_size=BATCH_SIZE)
        # bulk_create sends no signals, but freshcache captures it: nothing to invalidate here.
        return len(new), len(comments)

    def _plan_post(
        self, i: int, seed: int, authors: list, tags: list
    ) -> tuple[Post, list, random.Random]:
        rng = random.Random(f"{seed}:post:{i}")
        title = lorem.title(rng)
        # SlugField holds 50 characters; the number keeps slugs unique when titles repeat.
        slug = f"{slugify(title)[:40].rstrip('-')}-{i + 1}"
        published_at = FIRST_POST_AT + timedelta(hours=13 * i, minutes=rng.randint(0, 300))
        post = Post(
            author=rng.choice(authors),
            title=title,
            slug=slug,
            body=lorem.body(rng),
            published_at=published_at,
            view_count=rng.randint(0, 500),
        )
        return post, rng.sample(tags, rng.randint(1, 3)), rng

    def _plan_comments(self, post: Post, average: int, rng: random.Random) -> list[Comment]:
        count = rng.randint(average - average // 2, average + average // 2)
        return [
            Comment(
                post=post,
                author_name=rng.choice(lorem.COMMENTER_NAMES),
                body=lorem.comment_body(rng),
                # A few held for moderation, so the "approved only" filter shows in the demo.
                approved=rng.random() > 0.07,
            )
            for _ in range(count)
        ]

    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            return
        user_model.objects.create_superuser("admin", "admin@example.com", "admin")
        self.stdout.write(
            self.style.WARNING(
                "Created superuser admin / password admin: for the local demo only, "
                "never on a reachable server (use --no-admin to skip)."
            )
        )
