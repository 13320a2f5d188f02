#!/usr/bin/env python3
"""Writes rules-fuzzer seeds: one iptables-restore file per iptables
extension test (shared/fixtures/iptables-t/*.t), holding the rules the real
iptables accepts (result OK), plus the oracle test's own corpus.

Usage: rules_seeds.py FIXTURES_DIR ORACLE_CORPUS_DIR OUT_DIR
"""
import pathlib
import shutil
import sys


def convert(t_file):
    table, chain = "filter", "INPUT"
    blocks = {}
    for line in t_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line[0] in "@%":
            continue
        if line.startswith(":"):
            chain = line[1:].split(",")[0]
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        fields = line.split(";")
        if len(fields) >= 3 and fields[2] == "OK":
            blocks.setdefault(table, []).append(f"-A {chain} {fields[0]}")
    out = []
    for table, rules in blocks.items():
        out.append(f"*{table}")
        out.extend(rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    fixtures, oracle, out = (pathlib.Path(a) for a in sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for t in sorted((fixtures / "iptables-t").glob("*.t")):
        text = convert(t)
        if text:
            (out / (t.stem + ".rules")).write_text(text)
            n += 1
    for r in sorted(oracle.glob("*.rules")):
        shutil.copy(r, out / ("oracle-" + r.name))
        n += 1
    print(f"rules_seeds: {n} seeds in {out}")


if __name__ == "__main__":
    main()
