"""A data migration written for the schema of 0001: it writes through the historical ``Page``,
which lacks the keyed columns (``locale_id``, ``code``) that 0003 adds to the current model.

Every write path the ORM has goes through it once; the rows left are checked by
tests/capture/test_model_shapes.py.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    Page = apps.get_model("shapes_app", "Page")
    root = Page.objects.create(title="root")
    a, b, c, d = (Page.objects.create(title=t, parent=root) for t in "abcd")
    Page.objects.filter(parent=root).update(title="child")
    a.title = "first"
    a.save()
    a.save(update_fields=["title"])
    b.title = "second"
    Page.objects.bulk_update([b], ["title"])
    Page.objects.filter(pk=c.pk).delete()
    Page.objects.get(pk=d.pk).delete()
    Page.objects.bulk_create([Page(title="bulk", parent=root)])
    Page.objects.filter(title="bulk").delete()
    Page.objects.create(title="last", parent=root)


def backwards(apps, schema_editor):
    apps.get_model("shapes_app", "Page").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("shapes_app", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
