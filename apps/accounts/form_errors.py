"""Showing a service's refusal on the account pages' forms."""

from __future__ import annotations

from django import forms

from apps.core.errors import DomainError


def add_domain_error(form: forms.Form, exc: DomainError) -> None:
    """Each field error on its field (or on the form when the form has no such field); the message on the
    form when the refusal names no field."""
    for field, errors in exc.fields.items():
        for error in errors:
            form.add_error(field if field in form.fields else None, error)
    if not exc.fields:
        form.add_error(None, exc.message)
