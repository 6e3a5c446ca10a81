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
are required. See `hw_configs/` for complete, cited presets.

## What is rejected

Every problem is an input error: one line on stderr naming the file (or `--set`) and the dotted
key, exit status 2, no traceback, nothing written. All the problems of a file are listed at once
(the first 8 spelled out, the rest counted), with long values abbreviated:

    hw.yaml: pe_array.rowz: unknown key (did you mean 'rows'?); name: missing required key

- **Not a text file.** Files are read as bytes: a binary, gzip-compressed or non-UTF-8 file (or
  one over 64 MiB) is refused as "not a text YAML file", naming the offending byte.
- **Not safe YAML.** Only the safe loader's types; `!!python` and other tags are errors.
- **A key given twice** in one mapping (`rows: 16` then `rows: 64`; also `1` and `0x1`, `yes`
  and `true`, which YAML reads as the same key) is an error naming both lines; YAML's own rule
  (the last one wins) would hide the typo. Merge keys (`<<: *base`) may override what they
  merge.
- **Documents of more than 100,000 values**, counted as they are read and again with aliases
  expanded ("billion laughs": a 2 KB file of nested aliases can stand for billions of strings),
  and aliases that refer to the node containing them are refused before any value is built; so
  are documents nested too deeply to parse. No config, grid or recipe comes near that size.
- **Unknown keys** (with the closest known key, or the list of expected keys, given once),
  **missing required keys**, **wrong types** (`true` is not a number, `1` is not a string),
  **values out of range** or not among the allowed choices, and non-finite numbers.
- **Impossible combinations**: a systolic dataflow with `vector_width` > 1 or with gate support,
  a register file too small for the dataflow, an accumulator narrower than the operands, a gate
  group the vector width does not divide, index formats missing for the sparsity claimed, and a
  missing energy entry that a setting needs (`vector_op` with `vector_unit.lanes`,
  `compaction_network_per_mac` with `decoder.compaction`).

The same validator checks training recipes (`accelsim record --config`, where SyncCP keys
without `algo: synccp` and gating keys without a gating algorithm are errors too), and the same
strict YAML reader loads sweep grids. A valid config whose `sparsity_support` exploits none of a
replayed trace's gate or weight masks gets a `warning:` line naming the key: that part of the
replay gains nothing by construction.

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
