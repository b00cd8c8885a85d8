#!/usr/bin/env python3
"""Render or lint a Helm chart offline with helm-python-sdk (Helm's Go SDK; no helm binary).

    helm-chart.py render CHART [--values JSON] [--name N] [--namespace NS] [--notes]
    helm-chart.py lint   CHART [--values JSON] [--namespace NS]

`render` validates the values against the chart's values.schema.json first, exactly as
`helm install` does, then prints every rendered manifest as one multi-document YAML stream
(each document preceded by `# Source: <template>`), or only NOTES.txt with --notes.
`lint` runs `helm lint --strict` and fails on any warning or error.
Exit status: 0 ok, 1 schema/render/lint failure (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

import helm_python as helm


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["render", "lint"])
    p.add_argument("chart")
    p.add_argument("--values", default="{}", help="values as a JSON object (merged over values.yaml)")
    p.add_argument("--name", default="irsa", help="release name")
    p.add_argument("--namespace", default="irsa-system", help="release namespace")
    p.add_argument("--notes", action="store_true", help="print the rendered NOTES.txt only")
    return p.parse_args()


def render(args: argparse.Namespace, values: dict) -> int:
    with helm.Chart.load(args.chart) as chart:
        # helm install checks the user's values merged over the defaults against the schema.
        chart.validate_schema(chart.merge_values(values))
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    out = []
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            if args.notes:
                sys.stdout.write(text)
            continue
        if args.notes or not text.strip():
            continue
        out.append(f"# Source: {path}\n{text.strip()}\n")
    if not args.notes:
        sys.stdout.write("---\n".join(out))
    return 0


def lint(args: argparse.Namespace, values: dict) -> int:
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems_text = [f"{m.get('path')}: {m.get('error')}" for m in problems]
    problems_text += [str(e) for e in report.get("errors") or []]
    for line in problems_text:
        print(f"lint: {line}", file=sys.stderr)
    return 1 if problems_text else 0


def main() -> int:
    args = parse_args()
    try:
        values = json.loads(args.values)
    except json.JSONDecodeError as err:
        print(f"--values is not JSON: {err}", file=sys.stderr)
        return 2
    try:
        return render(args, values) if args.action == "render" else lint(args, values)
    except helm.HelmError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
