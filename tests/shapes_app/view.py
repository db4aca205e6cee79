"""An unmanaged model on a view that PostgreSQL cannot lock rows of (``SELECT DISTINCT``), made
writable by ``INSTEAD OF`` triggers.

It exists only inside :func:`view_model`: the view and the model are made on entry and removed
on exit (the model from Django's app registry and from freshcache's), because the log triggers
report a view as "not a table" and their tests expect every tracked table to be one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.db import connection, models

from freshcache.capture import tables

CREATE = [
    """CREATE TABLE shapes_view_base (
        id serial PRIMARY KEY, title varchar(50) NOT NULL, code varchar(20) UNIQUE,
        category_id bigint NOT NULL)""",
    """CREATE VIEW shapes_view_row AS
        SELECT DISTINCT id, title, code, category_id FROM shapes_view_base""",
    """CREATE FUNCTION shapes_view_row_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO shapes_view_base (title, code, category_id)
            VALUES (NEW.title, NEW.code, NEW.category_id) RETURNING id INTO NEW.id;
            RETURN NEW;
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE shapes_view_base SET id = NEW.id, title = NEW.title, code = NEW.code,
                category_id = NEW.category_id WHERE id = OLD.id;
            RETURN NEW;
        ELSE
            DELETE FROM shapes_view_base WHERE id = OLD.id;
            RETURN OLD;
        END IF;
    END $$""",
    """CREATE TRIGGER shapes_view_row_write INSTEAD OF INSERT OR UPDATE OR DELETE
        ON shapes_view_row FOR EACH ROW EXECUTE FUNCTION shapes_view_row_write()""",
]
DROP = [
    "DROP VIEW IF EXISTS shapes_view_row",
    "DROP FUNCTION IF EXISTS shapes_view_row_write()",
    "DROP TABLE IF EXISTS shapes_view_base",
]


@contextmanager
def view_model() -> Iterator[type[models.Model]]:
    """The model ``shapes_app.ViewRow`` on a fresh view (PostgreSQL, autocommit)."""
    with connection.cursor() as cursor:
        for sql in DROP + CREATE:
            cursor.execute(sql)

    class Meta:
        app_label = "shapes_app"
        managed = False
        db_table = "shapes_view_row"

    model = type(
        "ViewRow",
        (models.Model,),
        {
            "__module__": __name__,
            "Meta": Meta,
            "title": models.CharField(max_length=50),
            "code": models.CharField(max_length=20, unique=True, null=True),
            "category": models.ForeignKey(
                "shapes_app.Category",
                on_delete=models.DO_NOTHING,
                db_constraint=False,
                related_name="+",
            ),
        },
    )
    tables.reset()
    try:
        yield model
    finally:
        del apps.all_models["shapes_app"]["viewrow"]
        apps.clear_cache()
        tables.reset()
        with connection.cursor() as cursor:
            for sql in DROP:
                cursor.execute(sql)
