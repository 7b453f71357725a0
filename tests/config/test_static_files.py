"""Static files are served by whitenoise from the collected files (production serves no Django view)."""

from django.core.management import call_command
from django.test import Client, override_settings


def test_whitenoise_serves_collected_static_files(tmp_path):
    with override_settings(STATIC_ROOT=tmp_path):
        call_command("collectstatic", "--noinput", verbosity=0)
        response = Client().get("/static/css/console.css")
    assert response.status_code == 200
    assert b"--accent" in b"".join(response.streaming_content)
