from typing import Any

import pytest

from tests.instances.helpers import Catalog, seed


@pytest.fixture
def catalog(db: Any) -> Catalog:
    return seed()
