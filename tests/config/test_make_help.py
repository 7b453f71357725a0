"""`make help` lists every target of the Makefile (and of sandbox/sandbox.mk, which it includes), one line
each, and nothing that is not a target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULE = re.compile(r"^([a-z][a-z0-9-]*)\s*:(?!=)", re.MULTILINE)  # `name:`, not `NAME := value`
LISTED = re.compile(r"^  ([a-z][a-z0-9-]*) {2,}\S")


def targets() -> set[str]:
    text = (REPO / "Makefile").read_text() + (REPO / "sandbox" / "sandbox.mk").read_text()
    return set(RULE.findall(text))


def help_lines() -> list[str]:
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_every_target_is_listed_once_and_only_targets_are() -> None:
    listed = [m.group(1) for line in help_lines() if (m := LISTED.match(line))]
    assert len(listed) == len(set(listed)), "a target is listed twice"
    assert set(listed) == targets()


def test_the_rule_pattern_finds_the_targets_it_must() -> None:
    # Guards the check above against a pattern that finds nothing (then any help would pass).
    assert {"run", "test", "unit", "lint", "typecheck", "sandbox", "test-sandbox-reset"} <= targets()
    assert not any(name.isupper() for name in targets())


def test_every_phony_target_has_a_rule() -> None:
    text = (REPO / "Makefile").read_text() + (REPO / "sandbox" / "sandbox.mk").read_text()
    phony = {
        name
        for block in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.MULTILINE)
        for name in block.replace("\\\n", " ").split()
    }
    assert phony and phony <= targets()
