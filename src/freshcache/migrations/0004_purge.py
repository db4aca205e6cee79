from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("freshcache", "0003_lease")]

    operations = [
        migrations.CreateModel(
            name="PurgeKey",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("purger", models.CharField(max_length=100)),
                ("key", models.CharField(max_length=200)),
                ("version", models.BigIntegerField()),
                ("created", models.FloatField()),
                ("next_try", models.FloatField(default=0.0)),
                ("claimed_until", models.FloatField(null=True)),
                ("attempts", models.IntegerField(default=0)),
                ("last_error", models.TextField(blank=True, default="")),
                ("phase", models.SmallIntegerField(default=0)),
            ],
            options={"db_table": "freshcache_purge"},
        ),
        migrations.AddConstraint(
            model_name="purgekey",
            constraint=models.UniqueConstraint(
                fields=("purger", "key"), name="freshcache_purge_key"
            ),
        ),
    ]
