"""A small HTML tree for the console's template tests (the standard library's parser; no extra package).

root = parse(html)
figure = root.by_id("spend-by-day")
bars = figure.find_all("rect", cls="chart-bar")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Elements without a closing tag.
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    content: list[Node | str] = field(default_factory=list)  # children and text, in document order

    @property
    def text(self) -> str:
        """The text of the element and its descendants, whitespace collapsed."""
        return " ".join(" ".join(p if isinstance(p, str) else p.text for p in self.content).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.walk()

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag and (cls is None or cls in n.classes)]

    def find(self, tag: str, cls: str | None = None) -> Node:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag}{f' class={cls}' if cls else ''}> in <{self.tag} {self.attrs}>"
        return found[0]

    def by_id(self, element_id: str) -> Node:
        for node in self.walk():
            if node.attrs.get("id") == element_id:
                return node
        raise AssertionError(f"no element with id {element_id!r}")

    def rows(self) -> list[list[str]]:
        """A table's body rows as lists of cell texts."""
        body = self.find("tbody")
        return [[cell.text for cell in tr.children if cell.tag in ("td", "th")] for tr in body.find_all("tr")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = self._add(tag, attrs)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add(tag, attrs)

    def _add(self, tag: str, attrs: list[tuple[str, str | None]]) -> Node:
        node = Node(tag, {k: v or "" for k, v in attrs}, parent=self.current)
        self.current.children.append(node)
        self.current.content.append(node)
        return node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.content.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
