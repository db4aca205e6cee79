from django.contrib import admin

from blog.models import Author, Comment, Post, Tag


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "bio"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    fields = ["author_name", "body", "approved"]


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "published_at", "view_count"]
    list_filter = ["author", "tags"]
    list_select_related = ["author"]
    search_fields = ["title", "body"]
    date_hierarchy = "published_at"
    prepopulated_fields = {"slug": ["title"]}
    filter_horizontal = ["tags"]
    # Counted by the post page itself; editing it by hand would only race with readers.
    readonly_fields = ["view_count"]
    inlines = [CommentInline]


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ["author_name", "post", "created_at", "approved"]
    list_filter = ["approved"]
    list_editable = ["approved"]
    list_select_related = ["post"]
    search_fields = ["author_name", "body"]
    # A select box listing every post would be unusable with a few hundred of them.
    raw_id_fields = ["post"]
