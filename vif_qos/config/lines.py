"""Line numbers of a configobj file's sections and keys (the policy file, the
overrides file): ConfigObj keeps none for values, so :func:`scan_lines` walks the
text with ConfigObj's own section and keyword patterns and nesting rules (the same
on configobj 5.0.8 and 5.0.9). Pure (configobj's patterns only, no file).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple


def scan_lines(lines: Sequence[str]) -> Dict[Tuple[str, ...], int]:
    """Map (section path..., key) and (section path...) to 1-based line numbers.

    Uses ConfigObj's own ``_sectionmarker`` and ``_keyword`` patterns and its
    nesting rules, skipping triple-quoted multi-line values.
    """
    from configobj import ConfigObj

    found: Dict[Tuple[str, ...], int] = {}
    path: List[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        mat = ConfigObj._sectionmarker.match(line)
        if mat is not None:
            depth = mat.group(2).count("[")
            name = _unquote(mat.group(3))
            path = path[:max(depth - 1, 0)]
            if len(path) == depth - 1:
                path.append(name)
                found.setdefault(tuple(path), index)
            continue
        mat = ConfigObj._keyword.match(line)
        if mat is None:
            continue
        key = _unquote(mat.group(2))
        found.setdefault(tuple(path) + (key,), index)
        value = mat.group(3)
        if value[:3] in ('"""', "'''"):
            quote = value[:3]
            if value.count(quote) < 2:
                while index < len(lines) and quote not in lines[index]:
                    index += 1
                index += 1
    return found


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
