"""Parsing untrusted XML before it is signed, and finding the elements a signature names.

The parser loads no DTD, resolves no entity and reaches no network; a document that declares a
DTD at all is refused (XXE, entity-expansion bombs), as is one larger or deeper than the limits.
Ids are indexed over every attribute a verifier may treat as one (``Id``, ``ID``, ``id``,
``xml:id``): a value that appears twice is refused, since a verifier could then check one element
while a reader sees the other (signature wrapping).

A placement is a small XPath subset walked here without an XPath engine, so nothing the caller
writes is evaluated: ``/A/B``, ``//B``, ``A/B`` (relative to the root element) and ``B[2]``
positions. Steps match local names, in any namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from signer.errors import InvalidXml

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
_QUOTE = 200

XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
ID_ATTRIBUTES = ("Id", "ID", "id", XML_ID)
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS_SIGNATURE = f"{{{DS_NS}}}Signature"


class XmlDtdForbidden(InvalidXml):
    """A DOCTYPE, entity declaration or entity reference: never accepted."""

    code = "xml_dtd_forbidden"


class XmlTooLarge(InvalidXml):
    code = "xml_too_large"


class XmlTooDeep(InvalidXml):
    code = "xml_too_deep"


class DuplicateId(InvalidXml):
    """Two elements carry the same Id: which one a reference means would depend on the reader."""

    code = "duplicate_id"


class ReferenceNotFound(InvalidXml):
    code = "reference_not_found"


class PlacementNotFound(InvalidXml):
    code = "placement_not_found"


class InvalidPlacement(InvalidXml):
    """A placement outside the XPath subset, matching several elements, or inside what is signed."""

    code = "invalid_placement"


def quote(value: str | bytes) -> str:
    """At most ~200 characters of caller input, for an error message."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return repr(text if len(text) <= _QUOTE else text[:_QUOTE] + "…")


def _parser() -> etree.XMLParser:
    # One per call: lxml parsers are not safe to share between threads.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           attribute_defaults=False, huge_tree=False, remove_comments=False, remove_pis=False)


def parse(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> etree._ElementTree:
    """The document, well-formed, without DTD or entities, within the size and depth limits."""
    if not isinstance(data, bytes):
        raise InvalidXml("the XML document must be given as bytes")
    if len(data) > max_bytes:
        raise XmlTooLarge(f"the XML document has {len(data)} bytes, more than the limit of {max_bytes}")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        if "DOCTYPE" in str(exc) or "Entity" in str(exc):
            raise XmlDtdForbidden(f"DTDs and entities are not accepted: {quote(str(exc))}") from exc
        raise InvalidXml(f"the XML document is not well-formed: {quote(str(exc))}") from exc
    except ValueError as exc:  # e.g. an encoding lxml does not know
        raise InvalidXml(f"the XML document cannot be read: {quote(str(exc))}") from exc
    tree = root.getroottree()
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise XmlDtdForbidden("the XML document declares a DTD (DOCTYPE); DTDs and entities are not accepted")
    _check_depth(root, max_depth)
    return tree


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, node in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            if isinstance(node, etree._Entity):  # unreachable without a DTD, kept as a second lock
                raise XmlDtdForbidden("the XML document uses entity references")
            depth += 1
            if depth > max_depth:
                raise XmlTooDeep(f"the XML document nests elements deeper than {max_depth} levels")
        else:
            depth -= 1


def id_index(tree: etree._ElementTree) -> dict[str, etree._Element]:
    """Every Id value and its element; refuses a value carried twice, by one or by several attribute names."""
    index: dict[str, etree._Element] = {}
    for element in tree.getroot().iter(etree.Element):
        for name in ID_ATTRIBUTES:
            value = element.get(name)
            if value is None:
                continue
            other = index.get(value)
            if other is not None and other is not element:
                raise DuplicateId(f"the Id {quote(value)} appears more than once in the document")
            if other is element:
                raise DuplicateId(f"the element {quote(_local(element))} carries the Id {quote(value)} twice")
            index[value] = element
    return index


_NCNAME = re.compile(r"[^\W\d][\w.\-]*")


def check_id(value: str) -> None:
    if not isinstance(value, str) or len(value) > _QUOTE or not _NCNAME.fullmatch(value):
        raise ReferenceNotFound(f"the reference must be an element's Id (an XML name), not {quote(str(value))}")


def referenced_element(index: dict[str, etree._Element], reference_id: str) -> etree._Element:
    """The element whose Id is ``reference_id``: exactly one, outside any signature."""
    check_id(reference_id)
    element = index.get(reference_id)
    if element is None:
        raise ReferenceNotFound(f"no element has the Id {quote(reference_id)}")
    if any(a.tag == DS_SIGNATURE for a in element.iterancestors()) or element.tag == DS_SIGNATURE:
        raise ReferenceNotFound(f"the Id {quote(reference_id)} names a part of a signature, not the document's data")
    return element


@dataclass(frozen=True)
class _Step:
    descendant: bool
    name: str
    position: int | None


_STEP = re.compile(r"(//|/)?([^\W\d][\w.\-]*)(?:\[([1-9][0-9]{0,3})\])?")
MAX_STEPS = 16


def _steps(placement: str) -> tuple[bool, list[_Step]]:
    if not isinstance(placement, str) or not placement or len(placement) > _QUOTE:
        raise InvalidPlacement(
            f"the placement must be a short path such as '/Hoso/CKy_Dvi', not {quote(str(placement))}")
    absolute = placement.startswith("/")
    steps, pos = [], 0
    while pos < len(placement):
        match = _STEP.match(placement, pos)
        if match is None or (pos > 0 and match.group(1) is None) or match.end() == pos:
            raise InvalidPlacement(
                f"the placement {quote(placement)} is not in the accepted subset: /A/B, //B, A/B, B[n]")
        steps.append(_Step(match.group(1) == "//", match.group(2),
                           int(match.group(3)) if match.group(3) else None))
        pos = match.end()
    if len(steps) > MAX_STEPS:
        raise InvalidPlacement(f"the placement {quote(placement)} has more than {MAX_STEPS} steps")
    return absolute, steps


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def find_placement(tree: etree._ElementTree, placement: str) -> etree._Element:
    """The one element ``placement`` names."""
    absolute, steps = _steps(placement)
    root = tree.getroot()
    # None stands for the document node above the root, where an absolute path starts;
    # a relative path starts at the root element (XPath evaluated with the root as context).
    context: list[etree._Element | None] = [None] if absolute else [root]
    for step in steps:
        found: dict[etree._Element, None] = {}
        for node in context:
            for parent in _self_and_descendants(node, root) if step.descendant else (node,):
                found.update(dict.fromkeys(_children(parent, root, step)))
        context = list(found)
        if not context:
            raise PlacementNotFound(f"no element matches the placement {quote(placement)}")
    if len(context) > 1:
        raise InvalidPlacement(f"the placement {quote(placement)} matches {len(context)} elements; name one")
    element = context[0]
    assert element is not None
    return element


def _self_and_descendants(node: etree._Element | None, root: etree._Element) -> list[etree._Element | None]:
    if node is None:
        return [None, root, *root.iterdescendants(etree.Element)]
    return [node, *node.iterdescendants(etree.Element)]


def _children(parent: etree._Element | None, root: etree._Element, step: _Step) -> Iterator[etree._Element]:
    seen = 0
    for child in (root,) if parent is None else parent.iterchildren(etree.Element):
        if _local(child) == step.name:
            seen += 1
            if step.position is None or seen == step.position:
                yield child


def check_placement(container: etree._Element, signed: etree._Element, placement: str) -> None:
    """The container must lie outside the signed element and outside every existing signature."""
    if container is signed or any(a is signed for a in container.iterancestors()):
        raise InvalidPlacement(f"the placement {quote(placement)} lies inside the signed element: "
                               "the signature would change what it signs")
    if container.tag == DS_SIGNATURE or any(a.tag == DS_SIGNATURE for a in container.iterancestors()):
        raise InvalidPlacement(f"the placement {quote(placement)} lies inside an existing signature")
