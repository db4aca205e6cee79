from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    verbose_name = "Blog"
    # Pinned here, not left to the project's DEFAULT_AUTO_FIELD, so the migration stays the
    # same whether the blog runs under mysite's settings or the test suite's.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import freshcache
        from blog.models import Post
        from blog.views import view_count

        # Automatic capture already invalidates every page that read a post when it changes.
        # This is the explicit form, for what capture cannot see (e.g. a page that shows a post
        # without querying it): saving a post invalidates these URLs on every store.
        freshcache.register(Post, urls=lambda post: [post.get_absolute_url(), "/"])
        # Filled per request, even on a cached page: the view count changes on every view.
        freshcache.register_placeholder("view_count", view_count)
