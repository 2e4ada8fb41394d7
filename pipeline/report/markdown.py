"""Small Markdown helpers for the report: tables and number formatting ("not available" for None)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

NA = "n/a"
MAX_ROWS = 60


def num(value: Optional[float], digits: int = 1) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return NA
    return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"


def pct(value: Optional[float], digits: int = 1) -> str:
    return NA if value is None else f"{100 * value:.{digits}f}%"


def count(value: Optional[float]) -> str:
    """A parameter count as 1.23M / 45.6K."""
    if value is None:
        return NA
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return str(int(value))


def _cell(value: Any) -> str:
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for key, value in obj.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, _scalar(obj))]


def json_tables(obj: Optional[Any]) -> str:
    """Any JSON object as Markdown: a mapping of records (a dict of dicts of scalars) becomes one table
    with a row per record; everything else a key/value table of flattened paths."""
    if obj is None:
        return "not available"
    if not isinstance(obj, dict):
        return f"`{_scalar(obj)}`"
    parts, rest = [], {}
    for key, value in obj.items():
        records = value if isinstance(value, dict) and value and all(
            isinstance(v, dict) and all(not isinstance(x, dict) for x in v.values())
            for v in value.values()) else None
        if records:
            columns = list(dict.fromkeys(c for record in records.values() for c in record))
            rows = [[name] + [_scalar(r.get(c, "")) for c in columns] for name, r in records.items()]
            parts.append(f"**{key}**\n\n" + md_table([key] + columns, rows[:MAX_ROWS]))
        else:
            rest[key] = value
    flat = _flatten(rest)
    if flat:
        more = f"\n\n({len(flat) - MAX_ROWS} more entries not shown)" if len(flat) > MAX_ROWS else ""
        parts.insert(0, md_table(["key", "value"], flat[:MAX_ROWS]) + more)
    return "\n\n".join(parts)
