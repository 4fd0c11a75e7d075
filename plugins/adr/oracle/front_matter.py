"""Reads the YAML front matter of Markdown files with PyYAML, as MADR tooling does.

Usage: python front_matter.py FILE...
Prints a JSON list with one object per file: the front matter's keys and values (dates as
YYYY-MM-DD text), or null for a file without front matter. Exits non-zero when a front matter
block is not valid YAML or not a mapping.
"""

import datetime
import json
import sys

import yaml


def front_matter(text):
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None
    for end, line in enumerate(lines[1:], start=1):
        if line.rstrip() in ("---", "..."):
            data = yaml.safe_load("\n".join(lines[1:end]))
            if not isinstance(data, dict):
                raise ValueError(f"front matter is not a mapping: {data!r}")
            return {
                key: value.isoformat() if isinstance(value, datetime.date) else value
                for key, value in data.items()
            }
    raise ValueError("front matter is not closed")


def main():
    out = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            out.append(front_matter(f.read()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
