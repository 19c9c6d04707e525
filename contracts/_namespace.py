"""Product-id namespaces: which product ids a registered key's owner may declare.

A namespace is a URN prefix (``urn:pact:acme.cn``), the way a GS1 company prefix covers the
GTINs a company issues. The rule (:func:`in_namespace`) works on URN boundaries, so that a prefix
never grants a longer name that merely starts the same way:

* ``urn:pact:acme.cn`` covers ``urn:pact:acme.cn`` itself and every id that continues it with
  ``:`` or ``/`` (``urn:pact:acme.cn:product-id:X``, ``urn:pact:acme.cn/x``), but not
  ``urn:pact:acme.cn-evil:product-id:X`` nor ``urn:pact:acme.cnx``;
* a namespace that itself ends with ``:`` or ``/`` covers every id that starts with it (the
  separator is already there).

Matching is exact (case-sensitive) text: an id spelled in another case is another roll-up node,
outside the namespace unless registered as such (fail closed). A namespace must name a URN
namespace identifier and something after it (``urn:pact:x``): ``urn:pact`` alone would hand out
every PACT product id.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["NAMESPACE_RE", "SEPARATORS", "in_namespace"]

SEPARATORS: Final = (":", "/")
"""What may follow a namespace in an id it covers."""

NAMESPACE_RE: Final = re.compile(r"[uU][rR][nN]:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+")
"""A namespace: ``urn:<NID>:<something>``, no white space."""


def in_namespace(product_id: str, namespace: str) -> bool:
    """Whether *namespace* covers *product_id* (see the module docstring).

    >>> in_namespace("urn:pact:acme.cn:product-id:X", "urn:pact:acme.cn")
    True
    >>> in_namespace("urn:pact:acme.cn-evil:product-id:X", "urn:pact:acme.cn")
    False
    >>> in_namespace("urn:pact:acme.cn", "urn:pact:acme.cn")
    True
    """
    if not namespace or not product_id.startswith(namespace):
        return False
    if len(product_id) == len(namespace) or namespace.endswith(SEPARATORS):
        return True
    return product_id[len(namespace)] in SEPARATORS
