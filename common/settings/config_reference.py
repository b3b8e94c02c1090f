"""The README's config reference (`a3c config --reference`), generated from the config dataclasses' field docs."""

import dataclasses

import yaml

from ray_a3c.common.settings.config import section_types


def reference_rows() -> list[tuple[str, str, str]]:
    """(key, default, doc) for every config key, in declaration order."""
    rows = []
    for section, cls in section_types().items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            rows.append(
                (
                    f"{section}.{f.name}",
                    yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("\n...").removesuffix(" ..."),
                    f.metadata["doc"],
                )
            )
    return rows


def reference_table() -> str:
    """The README's config reference: a Markdown table (a `|` in a doc is escaped, else it splits the cell)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, doc in reference_rows():
        cell = doc.replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(lines) + "\n"
