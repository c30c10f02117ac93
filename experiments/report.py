"""What every experiment ends with: a markdown table, printed and saved with its JSON."""

import json
from pathlib import Path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, name: str, title: str, command: str, table: str, results: dict) -> None:
    """Print `table`; write out/name.md (title, command, table) and out/name.json."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(f"# {title}\n\nCommand: `{command}`\n\n{table}\n")
