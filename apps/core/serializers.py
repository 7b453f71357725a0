from typing import Any

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Input serializer that refuses fields it does not know, so typos are not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def create(self, validated_data: Any) -> Any:  # input only: services do the writing
        raise NotImplementedError

    def update(self, instance: Any, validated_data: Any) -> Any:
        raise NotImplementedError
