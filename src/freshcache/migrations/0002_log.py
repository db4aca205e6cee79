from django.db import migrations, models


def set_created_default(apps, schema_editor):
    # Rows written by database triggers (and by psql) get their timestamp from the server.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE freshcache_log ALTER COLUMN created SET DEFAULT now()")
        for column in ("tbl", "op", "columns", "tags"):
            schema_editor.execute(
                f"ALTER TABLE freshcache_log ALTER COLUMN {column} SET DEFAULT ''"
            )


class Migration(migrations.Migration):
    dependencies = [("freshcache", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="LogEntry",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("source", models.CharField(max_length=16)),
                ("tbl", models.CharField(blank=True, default="", max_length=255)),
                ("op", models.CharField(blank=True, default="", max_length=16)),
                ("columns", models.TextField(blank=True, default="")),
                ("old", models.JSONField(null=True)),
                ("new", models.JSONField(null=True)),
                ("tags", models.TextField(blank=True, default="")),
            ],
            options={"db_table": "freshcache_log"},
        ),
        migrations.RunPython(set_created_default, migrations.RunPython.noop),
    ]
