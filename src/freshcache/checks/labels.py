"""The system checks of the labels in ``EXCLUDE``, ``VOLATILE_FIELDS`` and ``PREDICATE_FIELDS``.

The capture ignores an entry that names no model or column it would match (capture/tables.py):
each such label is an error here, freshcache.E015 to E017, so a typo does not pass silently.
A predicate column that cannot be keyed is freshcache.E018.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error

from ..conf import DEFAULTS, did_you_mean

__all__ = ["check_labels"]


def check_labels(settings: Any, registry: Any) -> list[CheckMessage]:
    """freshcache.E015 to E018: labels that name no model or column the capture would match
    (the capture ignores such an entry: capture/tables.py), and predicate columns that cannot
    be keyed. ``registry``: the app registry (``django.apps.apps``)."""
    messages: list[CheckMessage] = []
    for setting, labels in (
        ("EXCLUDE", settings.exclude),
        ("VOLATILE_FIELDS", settings.volatile_fields),
        ("PREDICATE_FIELDS", settings.predicate_fields),
    ):
        for label in labels:
            if setting == "EXCLUDE" and label in DEFAULTS["EXCLUDE"]:
                continue  # the defaults name apps a project may not install
            message = _check_label(setting, label, registry)
            if message is not None:
                messages.append(message)
    return messages


def _check_label(setting: str, label: str, registry: Any) -> CheckMessage | None:
    parts = label.split(".")
    fields = setting != "EXCLUDE"
    if not all(parts) or len(parts) not in ((3,) if fields else (1, 2)):
        example = "'blog.Post.view_count'" if fields else "'sessions' or 'admin.LogEntry'"
        shape = "app_label.ModelName.field_name" if fields else "app_label or app_label.ModelName"
        return Error(
            f"FRESHCACHE[{setting!r}] has {label!r}, which is not an {shape} label.",
            hint=f"Write each entry as {shape}, e.g. {example}.",
            id="freshcache.E015",
        )
    where = f"FRESHCACHE[{setting!r}] has {label!r}, but"
    unknown_hint = (
        "Name an installed app and one of its models as Model._meta.label spells them (e.g. "
        "'blog.Post'). Until then the entry is ignored."
    )
    configs = {c.label.lower(): c for c in registry.get_app_configs()}
    config = configs.get(parts[0].lower())
    if config is None:
        return Error(
            f"{where} no installed app is labelled {parts[0]!r}"
            f"{did_you_mean(parts[0], [c.label for c in configs.values()])}.",
            hint=unknown_hint,
            id="freshcache.E016",
        )
    if len(parts) == 1:
        return None
    models = {m._meta.model_name: m for m in config.get_models(include_auto_created=True)}
    model = models.get(parts[1].lower())
    if model is None or model._meta.proxy or model._meta.swapped:
        if model is None:
            names = [m._meta.object_name for m in models.values()]
            why = f"app {config.label!r} has no model {parts[1]!r}{did_you_mean(parts[1], names)}"
        elif model._meta.swapped:
            why = f"{model._meta.label} is swapped for {model._meta.swapped}"
        else:  # the capture tracks tables, and a proxy has its concrete model's
            concrete = model._meta.concrete_model._meta.label
            fix = ".".join([concrete, *parts[2:]])
            why = f"{model._meta.label} is a proxy model: its rows are {concrete}'s (write {fix!r})"
        return Error(f"{where} {why}.", hint=unknown_hint, id="freshcache.E016")
    return _check_field(setting, label, model, parts[2]) if fields else None


def _check_field(setting: str, label: str, model: Any, name: str) -> CheckMessage | None:
    from django.core.exceptions import FieldDoesNotExist

    from ..capture.tables import _keyable

    meta = model._meta
    own = [f for f in meta.local_concrete_fields if f.column is not None]
    field = next((f for f in own if f.name.lower() == name.lower()), None)
    if field is not None:
        if setting == "PREDICATE_FIELDS" and not _keyable(field):
            return Error(
                f"FRESHCACHE['PREDICATE_FIELDS'] has {label!r}, which cannot be keyed: "
                f"{_unkeyable(field)}.",
                hint="Remove it: reads that filter on it then depend on the whole table (still "
                "fresh, invalidated more often). freshcache keys integers, strings without "
                "db_collation, UUIDs and booleans; to key this value, keep it in such a column "
                "too (a price as a whole number of cents, a date as its ISO text).",
                id="freshcache.E018",
            )
        return None
    try:
        other = meta.get_field(name)
    except FieldDoesNotExist:
        other = None
    column = next((f for f in own if name.lower() in (f.attname.lower(), f.column.lower())), None)
    if column is not None:
        why = f"labels name fields, not columns (write '{meta.label}.{column.name}')"
    elif other is not None and other in meta.concrete_fields:  # multi-table inheritance
        origin = other.model._meta.label
        why = f"{other.name!r} is inherited from {origin}, whose table holds it (write "
        why += f"'{origin}.{other.name}')"
    elif other is not None:
        why = f"{other.name!r} is a relation without a column in {meta.db_table}"
    else:
        names = [f.name for f in own]
        why = f"{meta.label} has no field {name!r}{did_you_mean(name, names)}"
    return Error(
        f"FRESHCACHE[{setting!r}] has {label!r}, but {why}.",
        hint="Name a field stored in the model's own table, by its name: "
        "app_label.ModelName.field_name. Until then the entry is ignored.",
        id="freshcache.E017",
    )


#: Why a column of this type cannot be keyed (capture/tables.py keys only values with one
#: canonical text form).
_UNKEYABLE = {
    "DecimalField": "one decimal number has several spellings (1.5, 1.50)",
    "DateTimeField": "one instant has a spelling per time zone and precision",
    "FloatField": "a float has several spellings and rounds (0.1 + 0.2 != 0.3)",
    "JSONField": "one JSON value has many spellings (key order, spacing)",
}


def _unkeyable(field: Any) -> str:
    """Why ``field`` cannot be keyed, for freshcache.E018."""
    kind = type(field).__name__
    if not type(field).__module__.startswith("django.db.models"):
        return (
            f"{kind} is a custom field ({type(field).__module__}), and freshcache cannot know "
            "that reads and writes turn its values into the same text"
        )
    if getattr(field, "db_collation", None):
        return (
            f"it has db_collation={field.db_collation!r}, so values the database finds equal "
            "may differ in text"
        )
    target = getattr(field, "target_field", None)
    if field.is_relation and target is not None:
        return f"it refers to {target.model._meta.label}.{target.name}: {_unkeyable(target)}"
    reason = _UNKEYABLE.get(field.get_internal_type(), "its values have no one text form")
    return f"a {kind}, and {reason}, so a read and a write could name different tags"
