"""A parsed HTML page for the report tests: the elements, their attributes, their text."""

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"meta", "br", "img", "link", "input", "hr", "col", "area", "base", "source", "wbr", "embed", "track"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list["Element"] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all(self, tag: str, **attrs: str) -> list["Element"]:
        """Every descendant `tag` whose attributes include `attrs` (`class_` for class)."""
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in wanted.items()):
                found.append(child)
            found.extend(child.all(tag, **attrs))
        return found

    def by_id(self, ident: str) -> "Element":
        (found,) = [e for e in self.walk() if e.attrs.get("id") == ident]
        return found

    def walk(self) -> list["Element"]:
        return [self, *(e for child in self.children for e in child.walk())]

    def text_content(self) -> str:
        return "".join(self.text) + "".join(child.text_content() for child in self.children)

    def rows(self) -> list[list[str]]:
        """A table's body rows, each cell's text."""
        return [[td.text_content() for td in tr.all("td")] for tr in self.all("tr") if tr.all("td")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self._open[-1].children.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._open[-1].text.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def outside_references(page: Element) -> list[str]:
    """Attribute values that would make a browser fetch something: a URL in src, href, xlink,
    srcset, action, style url(...), or any element that loads by nature (script, link, img...)."""
    found = [f"<{e.tag}>" for e in page.walk() if e.tag in {"script", "link", "img", "iframe", "object", "embed"}]
    for element in page.walk():
        for name, value in element.attrs.items():
            if name in {"src", "href", "xlink:href", "srcset", "action", "data", "poster"} or "url(" in value:
                found.append(f"<{element.tag} {name}={value!r}>")
    found += [text for e in page.all("style") for text in e.text if "url(" in text or "@import" in text]
    return found
