from typing import Any

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Input serializer that refuses fields it does not know, so typos are not silently ignored, and numbers
    or booleans sent for text fields, which DRF would otherwise turn into strings."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
            errors.update(
                {
                    name: ["Must be a string."]
                    for name, field in self.fields.items()
                    if isinstance(field, serializers.CharField)
                    and name in data
                    and data[name] is not None
                    and not isinstance(data[name], str)
                }
            )
            # PostgreSQL cannot hold NUL in text: a lookup by such a slug would fail in the database (a 500),
            # so refuse it here on the field, whatever kind of field takes it.
            errors.update(
                {
                    name: ["Null characters are not allowed."]
                    for name, value in data.items()
                    if name in self.fields
                    and name not in errors
                    and isinstance(value, str)
                    and "\x00" in value
                }
            )
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def create(self, validated_data: Any) -> Any:  # input only: services do the writing
        raise NotImplementedError

    def update(self, instance: Any, validated_data: Any) -> Any:
        raise NotImplementedError


class MoneyField(serializers.DecimalField):
    """An amount of money, sent as a decimal string ("12.50") as the schema says: a JSON number would pass
    through a binary float in many clients before it reaches us, so it is refused on the field."""

    default_error_messages = {"not_a_string": 'Send the amount as a string, such as "12.50".'}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)
