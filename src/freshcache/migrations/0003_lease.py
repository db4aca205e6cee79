from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("freshcache", "0002_log")]

    operations = [
        migrations.CreateModel(
            name="Lease",
            fields=[
                ("key", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("token", models.CharField(max_length=32)),
                ("expires", models.FloatField()),
            ],
            options={"db_table": "freshcache_lease"},
        ),
    ]
