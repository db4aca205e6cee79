from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("freshcache", "0004_purge")]

    operations = [
        migrations.CreateModel(
            name="PublishedKey",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("path", models.CharField(max_length=1024)),
                ("key", models.CharField(max_length=200)),
                ("token", models.CharField(max_length=32)),
                ("entry", models.CharField(max_length=400)),
                ("store", models.CharField(max_length=100)),
            ],
            options={
                "db_table": "freshcache_published",
                "indexes": [
                    models.Index(fields=["key"], name="freshcache_published_key"),
                    models.Index(fields=["path"], name="freshcache_published_path"),
                ],
            },
        ),
    ]
