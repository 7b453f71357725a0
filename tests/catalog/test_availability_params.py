from apps.catalog.models import RegionStatus


def test_available_parameter_is_strict(catalog, owner):
    response = owner.token_client().get("/api/v1/instance-types?available=perhaps")
    assert response.status_code == 400
    assert "available" in response.json()["error"]["fields"]


def test_maintenance_region_listed_with_zero_available(catalog, owner):
    catalog.eu_west.status = RegionStatus.MAINTENANCE
    catalog.eu_west.save()
    response = owner.token_client().get("/api/v1/instance-types?region=eu-west-1")
    assert response.status_code == 200
    h100 = next(t for t in response.json()["results"] if t["slug"] == "gpu-h100x1")
    assert h100["regions"] == [{"region": "eu-west-1", "available": 0, "whole_nodes_free": {}, "zones": {}}]
    only_available = owner.token_client().get("/api/v1/instance-types?region=eu-west-1&available=true").json()
    assert only_available["count"] == 0
