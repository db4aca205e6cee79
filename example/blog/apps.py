from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    verbose_name = "Blog"
    # Pinned here, not left to the project's DEFAULT_AUTO_FIELD, so the migration stays the
    # same whether the blog runs under mysite's settings or the test suite's.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the invalidation receivers; imported for its side effect.
        from blog import signals  # noqa: F401
