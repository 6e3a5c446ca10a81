"""Regenerate docs/config.md from the config schema (units, ranges, meanings).

    .venv/bin/python scripts/make_config_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.config import describe_bounds, iter_keys, type_label  # noqa: E402

HEADER = """# Hardware configuration keys

Generated from the schema in `accelsim/config.py` by `scripts/make_config_docs.py`; a test fails
when this file and the schema disagree. `accelsim config keys` prints the same table.

A hardware file is YAML (safe loader only) with `kind: hardware` and `version: 1`. Every key can
be overridden on the command line with `--set KEY=VALUE` (the value is parsed as YAML: `16`,
`true`, `[fw, bd]`) and is type- and range-checked exactly like the file. Keys without a default
are required. See `hw_configs/` for two complete, cited presets.

| key | type | unit | allowed | default | meaning |
| --- | --- | --- | --- | --- | --- |
"""


def render() -> str:
    lines = []
    for key, meta, tp in iter_keys():
        allowed = describe_bounds(meta)
        default = meta.get("default_repr", "")
        lines.append(f"| `{key}` | {type_label(tp)} | {meta.get('unit', '')} | "
                     f"{'; '.join(allowed)} | {default} | {meta['doc']} |")
    return HEADER + "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "docs" / "config.md").write_text(render())
    print("wrote docs/config.md")
