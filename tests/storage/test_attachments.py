"""Storage reads one instance state through the attachment's foreign key without importing instances (the
layer order): the name it uses must be the instances' own."""

from apps.instances.states import State
from apps.storage.models import INSTANCE_TERMINATED


def test_storage_names_the_terminated_state_as_instances_do() -> None:
    assert State.TERMINATED.value == INSTANCE_TERMINATED
