from django.urls import path

from blog import views

app_name = "blog"

urlpatterns = [
    path("", views.front_page, name="front"),
    path("post/<slug:slug>/", views.post_detail, name="post"),
    path("tag/<slug:slug>/", views.tag_detail, name="tag"),
    path("author/<slug:slug>/", views.author_detail, name="author"),
]
