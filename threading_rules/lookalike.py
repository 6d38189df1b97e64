"""Domains made to look like someone else's: `stroymontаzh.ru` (Cyrillic а), `firm-ru.com`.

Threading never trusts a look-alike (only exact domains match), so this does not decide
anything; it names the attack in the security event so that an engineer sees it for what it is.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

# Letters that render like Latin ones (Unicode TR39 confusables, the ones seen in phishing of
# Russian companies), and digits that pass for letters.
_CONFUSABLE = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "l", "ї": "l", "ј": "j",
        "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g", "α": "a",
        "β": "b", "ε": "e", "ι": "l", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
        "υ": "u", "χ": "x", "0": "o", "1": "l", "i": "l", "|": "l",
    }
)  # fmt: skip
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_MIN_COMPACT = 6
"""Shorter names (a.ru) would look like half the internet; compare them only by skeleton."""


def to_unicode(domain: str) -> str:
    """`xn--...` labels decoded, so that a punycode homoglyph is compared as what it shows."""
    labels = []
    for label in domain.strip().strip(".").lower().split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def skeleton(domain: str) -> str:
    text = unicodedata.normalize("NFKC", to_unicode(domain)).casefold().translate(_CONFUSABLE)
    for pair, single in _MULTI:
        text = text.replace(pair, single)
    return text


def _compact(domain: str) -> str:
    return skeleton(domain).replace(".", "").replace("-", "")


def _labels(domain: str) -> list[str]:
    return [label for label in re.split(r"[.\-_]+", skeleton(domain)) if label]


def _contains_labels(haystack: list[str], needle: list[str]) -> bool:
    size = len(needle)
    return any(haystack[i : i + size] == needle for i in range(len(haystack) - size + 1))


def _within_one_edit(left: str, right: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (one typo, one swapped pair)."""
    if left == right:
        return True
    if abs(len(left) - len(right)) > 1:
        return False
    if len(left) == len(right):
        diffs = [i for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and left[diffs[0]] == right[diffs[1]]
            and left[diffs[1]] == right[diffs[0]]
        )
    shorter, longer = sorted((left, right), key=len)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def is_lookalike(candidate: str, genuine: str) -> bool:
    """Does `candidate` imitate `genuine` without being it (nor a subdomain of it)?"""
    candidate, genuine = to_unicode(candidate), to_unicode(genuine)
    if not candidate or not genuine or candidate == genuine:
        return False
    if candidate.endswith("." + genuine):
        return False  # a real subdomain belongs to the same owner
    if skeleton(candidate) == skeleton(genuine):
        return True
    if _contains_labels(_labels(candidate), _labels(genuine)):
        return True  # sis-ru.com, firm.ru.evil.example
    compact_candidate, compact_genuine = _compact(candidate), _compact(genuine)
    if len(compact_genuine) < _MIN_COMPACT:
        return False
    return compact_genuine in compact_candidate or _within_one_edit(
        compact_candidate, compact_genuine
    )


def find_imitated(candidate: str, genuine_domains: tuple[str, ...]) -> str | None:
    """The first genuine domain that `candidate` imitates, if any."""
    return next((domain for domain in genuine_domains if is_lookalike(candidate, domain)), None)
