"""WCAG 2.1 AA contrast of static/css/console.css, read from the stylesheet itself.

Text needs 4.5:1 against what it sits on (1.4.3); focus outlines, control borders and chart marks 3:1
(1.4.11). Every `color` the stylesheet sets is checked: against the rule's own background when it sets one,
against the surface listed in SITS_ON when the rule is drawn on a known one (the dark top bar, a menu), and
otherwise against both page surfaces (the page background and the cards). The palette's pairs that
inheritance creates (links and muted text on every surface, the states, buttons) are listed in TEXT_PAIRS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

CSS = Path(settings.BASE_DIR) / "static" / "css" / "console.css"
TEXT = 4.5
NON_TEXT = 3.0  # large text, focus outlines, control boundaries, chart marks


# --- reading the stylesheet ------------------------------------------------------------------------------


def rules(css: str) -> list[tuple[str, dict[str, str]]]:
    """(selector, declarations) of every rule, @media blocks flattened (their inner rules are rules too)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    found = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        declarations = {}
        for part in body.split(";"):
            if ":" in part:
                name, value = part.split(":", 1)
                declarations[name.strip()] = value.replace("!important", "").strip()
        found.append((" ".join(selector.split()), declarations))
    return found


RULES = rules(CSS.read_text())
PROPS = {name: value for selector, decls in RULES if selector == ":root" for name, value in decls.items()}


def resolve(value: str) -> str:
    """var(--x) replaced by the custom property's value, repeatedly."""
    for _ in range(5):
        value = re.sub(r"var\((--[\w-]+)\)", lambda m: PROPS[m.group(1)], value)
    return value


def colour(value: str) -> str | None:
    """The first solid hex colour in a (resolved) value: "1px solid var(--border)" -> "#767f92"."""
    match = re.search(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", resolve(value))
    return match.group(0).lower() if match else None


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def prop(name: str) -> str:
    value = colour(f"var({name})")
    assert value, f"{name} is not a colour in console.css"
    return value


def declared(selector: str, name: str) -> str:
    for sel, decls in RULES:
        if sel == selector and name in decls:
            value = colour(decls[name])
            assert value, f"{selector} {{ {name}: {decls[name]} }} has no colour"
            return value
    raise AssertionError(f"console.css has no rule {selector} {{ {name}: ... }}")


# The surfaces text is drawn on.
PAGE = ("--bg", "--card")
SURFACES = ("--bg", "--card", "--top", "--bad-bg")

# Rules that only set `color`, drawn on a known surface (anything else must read on the page and the cards).
SITS_ON = {
    ".topbar a, .topbar span": ("--top",),
    ".menu-list a, .menu-list span, .menu-list .linkish": ("--card",),
    ".muted-inverse": ("--card",),
    "button.linkish": ("--card",),
    ".sidenav a": ("--bg", "#e8ecf7"),  # and its hover background
    ".error, .errorlist": ("--bg", "--card", "--bad-bg"),
    ".blocked": ("--card",),
    "dl.facts dt": PAGE,
    ".types tr.unavailable": ("--card",),
    "details.chart-data summary": ("--card",),
    "figure.chart figcaption": ("--card",),
}

# Pairs that inheritance makes: (what, foreground, background, minimum).
TEXT_PAIRS = [
    ("body text on the page", "--fg", "--bg", TEXT),
    ("body text on a card", "--fg", "--card", TEXT),
    ("muted text on the page", "--muted", "--bg", TEXT),
    ("muted text on a card", "--muted", "--card", TEXT),
    ("muted text on a pending state", "--muted", "#fff3d6", TEXT),
    ("links on the page", "--accent", "--bg", TEXT),
    ("links on a card", "--accent", "--card", TEXT),
    ("links on a flash message", "--accent", "#e8eefc", TEXT),
    ("links on the error banner", "--accent", "--bad-bg", TEXT),
    ("hovered links", "--accent-dark", "--card", TEXT),
    ("button text", "#fff", "--accent", TEXT),
    ("hovered button text", "#fff", "--accent-dark", TEXT),
    ("danger button text", "#fff", "--bad", TEXT),
    ("the current page in the navigation", "#fff", "--accent", TEXT),
    ("text in a badge", "--fg", "#e8ecf7", TEXT),
    ("text in a flash message", "--fg", "#e8eefc", TEXT),
    ("text in an error flash", "--fg", "--bad-bg", TEXT),
    ("the error banner", "--bad", "--bad-bg", TEXT),
    ("the top bar", "#fff", "--top", TEXT),
    ("chart labels on a card", "--fg", "--card", TEXT),
]


def hex_of(name_or_hex: str) -> str:
    return prop(name_or_hex) if name_or_hex.startswith("--") else name_or_hex


def checked_colour_rules() -> list[tuple[str, str, str, float]]:
    """(selector, foreground, background, minimum) for every rule that sets `color`."""
    pairs = []
    for selector, decls in RULES:
        if "color" not in decls:
            continue
        fg = colour(decls["color"])
        if fg is None:  # inherit, currentColor
            continue
        own = decls.get("background-color") or decls.get("background")
        own_bg = colour(own) if own else None
        if own_bg is not None:
            pairs.append((selector, fg, own_bg, TEXT))
            continue
        assert not own or own.strip() in ("none", "transparent"), f"{selector}: unreadable background {own}"
        for surface in SITS_ON.get(selector, PAGE):
            pairs.append((selector, fg, hex_of(surface), TEXT))
    return pairs


# --- the checks ------------------------------------------------------------------------------------------


def test_the_stylesheet_is_read() -> None:
    assert len(RULES) > 50
    assert {"--fg", "--muted", "--accent", "--bg", "--card", "--bad", "--ok", "--warn", "--focus"} <= set(
        PROPS
    )
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the classic AA grey


@pytest.mark.parametrize(("selector", "fg", "bg", "minimum"), checked_colour_rules())
def test_every_text_colour_in_the_stylesheet_reads_on_its_background(
    selector: str, fg: str, bg: str, minimum: float
) -> None:
    assert contrast(fg, bg) >= minimum, f"{selector}: {fg} on {bg} is {contrast(fg, bg):.2f}:1"


def test_the_states_and_badges_are_covered() -> None:
    selectors = {selector for selector, *_ in checked_colour_rules()}
    for needed in (".state-running", ".state-failed", ".badge", "pre.log", ".skip-link", ".banner-bad"):
        assert any(needed in s for s in selectors), needed
    pending = next(s for s in selectors if ".state-pending" in s)
    assert ".state-provisioning" in pending


@pytest.mark.parametrize(("what", "fg", "bg", "minimum"), TEXT_PAIRS, ids=[p[0] for p in TEXT_PAIRS])
def test_inherited_text_pairs(what: str, fg: str, bg: str, minimum: float) -> None:
    ratio = contrast(hex_of(fg), hex_of(bg))
    assert ratio >= minimum, f"{what}: {hex_of(fg)} on {hex_of(bg)} is {ratio:.2f}:1"


@pytest.mark.parametrize("surface", SURFACES)
def test_the_focus_outline_stands_out_on_every_surface(surface: str) -> None:
    outline = declared(":focus-visible", "outline")
    assert outline == prop("--focus")
    ratio = contrast(outline, prop(surface))
    assert ratio >= NON_TEXT, f"focus outline {outline} on {surface} is {ratio:.2f}:1"


def test_every_outline_in_the_stylesheet_is_the_focus_colour() -> None:
    outlines = {sel: decls["outline"] for sel, decls in RULES if "outline" in decls}
    assert ":focus-visible" in outlines
    for selector, value in outlines.items():
        if value.strip() != "none":
            assert colour(value) == prop("--focus"), selector
        else:
            assert selector == "main:focus", f"{selector} removes the focus outline"


# (what, foreground, background): "--name" is a custom property; "selector | property" is what the rule sets.
NON_TEXT_PAIRS = [
    ("form control borders on a card", "input, select, textarea, button, .button | border", "--card"),
    ("form control borders on the page", "input, select, textarea, button, .button | border", "--bg"),
    (
        "form control borders on the error banner",
        "input, select, textarea, button, .button | border",
        "--bad-bg",
    ),
    ("buttons on a card", "--accent", "--card"),
    ("buttons on the page", "--accent", "--bg"),
    ("menu buttons in the top bar", ".menu > summary | border", "--top"),
    ("chart bars on a card", ".chart-bar | fill", "--card"),
    ("chart bars at a limit on a card", ".chart-bar-over | fill", "--card"),
    ("chart bars on their track", ".chart-bar | fill", ".chart-track | fill"),
    ("chart bars at a limit on their track", ".chart-bar-over | fill", ".chart-track | fill"),
    ("chart track outlines on a card", ".chart-track | stroke", "--card"),
    ("chart axes on a card", ".chart-axis, .chart-tick | stroke", "--card"),
    ("the runway line on a card", ".chart-line | stroke", "--card"),
    ("the runway line on its area", ".chart-line | stroke", ".chart-area | fill"),
]


def spec(value: str) -> str:
    if " | " in value:
        selector, name = value.split(" | ")
        return declared(selector, name)
    return hex_of(value)


@pytest.mark.parametrize(("what", "fg", "bg"), NON_TEXT_PAIRS, ids=[p[0] for p in NON_TEXT_PAIRS])
def test_control_boundaries_and_chart_marks(what: str, fg: str, bg: str) -> None:
    ratio = contrast(spec(fg), spec(bg))
    assert ratio >= NON_TEXT, f"{what}: {spec(fg)} on {spec(bg)} is {ratio:.2f}:1"


def test_charts_draw_with_the_palette_not_fixed_colours() -> None:
    charts = Path(settings.BASE_DIR) / "templates" / "console" / "charts"
    for template in charts.glob("*.html"):
        text = template.read_text()
        assert not re.search(r'(fill|stroke)="#', text), f"{template.name} hard-codes a colour"


# --- focus and motion ------------------------------------------------------------------------------------


def test_links_buttons_inputs_and_summaries_have_a_focus_visible_outline() -> None:
    outlined = {
        part.strip()
        for selector, decls in RULES
        if ":focus-visible" in selector and colour(decls.get("outline", "")) == prop("--focus")
        for part in selector.split(",")
    }
    for element in ("a", "button", "input", "select", "textarea", "summary"):
        assert f"{element}:focus-visible" in outlined, f"{element} relies on the catch-all only"


def test_the_skip_link_comes_on_screen_when_focused() -> None:
    hidden = next(decls for selector, decls in RULES if selector == ".skip-link")
    shown = next(decls for selector, decls in RULES if selector == ".skip-link:focus")
    assert hidden["left"].startswith("-") and not shown["left"].startswith("-")
    assert contrast(colour(hidden["color"]) or "", colour(hidden["background"]) or "") >= TEXT


def test_motion_only_without_a_reduced_motion_preference() -> None:
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    reduce = re.search(r"@media \(prefers-reduced-motion: reduce\) \{(.*?)\}\s*\}", css, flags=re.S)
    assert reduce, "console.css has no prefers-reduced-motion: reduce block"
    for name in ("animation-duration", "transition-duration", "scroll-behavior"):
        assert name in reduce.group(1), name
    # Outside the media queries that ask, nothing moves: no transitions, animations or smooth scrolling.
    unconditional = re.sub(r"@media \(prefers-reduced-motion: [\w-]+\) \{.*?\}\s*\}", "", css, flags=re.S)
    assert not re.search(r"\b(transition|animation)\s*:|scroll-behavior:\s*smooth", unconditional)
