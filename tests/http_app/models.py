from django.db import models


class Label(models.Model):
    name = models.CharField(max_length=50)


class Article(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=100)
    labels = models.ManyToManyField(Label, related_name="articles", blank=True)

    def get_absolute_url(self) -> str:
        return f"/t/article/{self.slug}/"
