from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("freshcache", "0005_published")]

    operations = [
        migrations.CreateModel(
            name="JournalRecord",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("ring", models.CharField(max_length=32)),
                ("record", models.TextField()),
            ],
            options={
                "db_table": "freshcache_journal",
                "indexes": [models.Index(fields=["ring", "id"], name="freshcache_journal_ring")],
            },
        ),
        migrations.CreateModel(
            name="JournalCounter",
            fields=[
                ("name", models.CharField(max_length=400, primary_key=True, serialize=False)),
                ("value", models.FloatField(default=0.0)),
            ],
            options={
                "db_table": "freshcache_counter",
                "verbose_name": "cache dashboard",
                "verbose_name_plural": "cache dashboard",
            },
        ),
    ]
