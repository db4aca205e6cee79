from django.db import migrations, models


def create_sequence(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE SEQUENCE IF NOT EXISTS freshcache_seq")
    else:
        Sequence = apps.get_model("freshcache", "Sequence")
        Sequence.objects.using(schema_editor.connection.alias).get_or_create(name="global")


def drop_sequence(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP SEQUENCE IF EXISTS freshcache_seq")


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="TagVersion",
            fields=[
                ("tag", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("version", models.BigIntegerField()),
            ],
            options={"db_table": "freshcache_tag"},
        ),
        migrations.CreateModel(
            name="Entry",
            fields=[
                ("key", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("payload", models.BinaryField()),
                ("versions", models.TextField()),
                ("expires", models.FloatField(null=True)),
            ],
            options={"db_table": "freshcache_entry"},
        ),
        migrations.CreateModel(
            name="Sequence",
            fields=[
                ("name", models.CharField(max_length=20, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={"db_table": "freshcache_sequence"},
        ),
        migrations.RunPython(create_sequence, drop_sequence),
    ]
