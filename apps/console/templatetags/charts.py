"""Server-rendered SVG charts for the console pages (no JavaScript): each tag draws a chart whose geometry
apps/console/charts.py computed, with a title, a description naming the figures, and a table of them.

    {% load charts %}
    {% bar_chart by_day chart_id="spend-by-day" caption="Spend by day (UTC)" key_label="Day" %}
    {% quota_bars gpu_chart chart_id="gpu-quota" caption="GPUs in use against quota" %}
    {% runway_chart runway chart_id="runway" caption="Balance runway" %}
"""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("console/charts/bar_chart.html")
def bar_chart(
    chart: dict[str, Any],
    *,
    chart_id: str,
    caption: str,
    key_label: str,
    unit: str = "USD",
    empty: str = "No usage in this period.",
) -> dict[str, Any]:
    return {
        "chart": chart,
        "chart_id": chart_id,
        "caption": caption,
        "key_label": key_label,
        "unit": unit,
        "empty": empty,
    }


@register.inclusion_tag("console/charts/quota_bars.html")
def quota_bars(chart: dict[str, Any], *, chart_id: str, caption: str) -> dict[str, Any]:
    return {"chart": chart, "chart_id": chart_id, "caption": caption}


@register.inclusion_tag("console/charts/runway.html")
def runway_chart(chart: dict[str, Any], *, chart_id: str, caption: str) -> dict[str, Any]:
    return {"chart": chart, "chart_id": chart_id, "caption": caption}
