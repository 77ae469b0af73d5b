"""Benchmark figures in the docs come from the committed results, never from a hand-copied number.

A page writes `{{ bench("predict_api/single_no_cache/p50_ms") }}`: the first segment names a section file
(`bench-results/predict_api.json`, written by `scripts.benchlib.write_results`), the rest is a path of keys in its
`results` ("/" separates them, because keys such as `[0.2, 0.8]` hold dots; a number picks a list's item). An
optional format spec formats the value (`{{ bench("moderation/cost/ratio", ".1f") }}`); without one it is shown
as the JSON holds it. `{{ bench_rows("quality/cross_validation", "f1", "pr_auc|.3f") }}` renders the body of a
table: one row per entry of that object (its key first), one cell per column path (`path|spec`); a
`{"mean", "std"}` pair is shown as `mean ± std`. `{{ bench_run("predict_api") }}` shows the run a section's
figures come from (date, commit, machine) and must be on every page that quotes that section, so no figure
appears without its run.

A figure without a source (no such file or key) and a quoted section without its run line stop the build, so
`mkdocs build --strict` (run by `make test`) fails instead of publishing a stale or invented number. mkdocs loads
this file as a hook (`hooks:` in mkdocs.yml); the tests import it to check the pages without building.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "bench-results"
FIGURE = re.compile(r"""\{\{\s*bench\(\s*"([^"]+)"\s*(?:,\s*"([^"]*)"\s*)?\)\s*\}\}""")
ROWS = re.compile(r"""\{\{\s*bench_rows\(((?:\s*"[^"]*"\s*,?)+)\)\s*\}\}""")
RUN = re.compile(r"""\{\{\s*bench_run\(\s*"([^"]+)"\s*\)\s*\}\}""")
QUOTED = re.compile(r'"([^"]*)"')


class MissingFigure(LookupError):
    """A page quotes a figure the committed results do not hold, or a section without its run."""


@cache
def section(name: str, results: Path = RESULTS) -> dict[str, Any]:
    """A section file as written by `write_results`: `{"run": {...}, "results": {...}}`."""
    path = results / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFigure(f"no {path.name} in {results}: run the benchmark that writes it") from None
    if not isinstance(data, dict) or not {"run", "results"} <= data.keys():
        raise MissingFigure(f"{path.name} has no run metadata: write it with scripts.benchlib.write_results")
    return data


def value_at(reference: str, results: Path = RESULTS) -> Any:
    """What `section/key/key...` holds in that section's results."""
    name, *keys = reference.split("/")
    value: Any = section(name, results)["results"]
    for key in keys:
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]  # rows of a table, or a before/after pair
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise MissingFigure(f"{reference}: {name}.json has no key {key!r} there")
    return value


def figure(reference: str, spec: str | None = None, results: Path = RESULTS) -> str:
    """The single value at `reference`, formatted with `spec` when given."""
    return _shown(reference, value_at(reference, results), spec)


def rows(reference: str, columns: list[str], results: Path = RESULTS) -> str:
    """Markdown table rows: each entry of the object at `reference` that is an object, then its columns."""
    lines = []
    for key, entry in value_at(reference, results).items():
        if not isinstance(entry, dict):
            continue  # protocol notes and counts beside the rows
        cells = [key.replace("<", "&lt;").replace(">", "&gt;")]  # a name such as "<url> + domain" is text
        for column in columns:
            path, _, spec = column.partition("|")
            cells.append(_shown(f"{reference}/{key}/{path}", value_at(f"{reference}/{key}/{path}", results), spec))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown(reference: str, value: Any, spec: str | None) -> str:
    if isinstance(value, dict) and value.keys() == {"mean", "std"}:
        return f"{_shown(reference, value['mean'], spec)} ± {_shown(reference, value['std'], spec)}"
    if isinstance(value, dict | list):
        raise MissingFigure(f"{reference} is not a single figure")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec) if spec and value is not None else str(value)


def run_line(name: str, results: Path = RESULTS) -> str:
    """One line naming the run: when, which commit, which machine, and how busy it was."""
    run = section(name, results)["run"]
    machine = run["machine"]
    load = machine.get("load_average_1m")
    busy = f", load average {load} at the end" if load is not None else ""
    return (
        f"*Measured {run['date']} at commit `{run['commit']}` on {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['system']}, Python {machine['python']}{busy}; raw numbers: `bench-results/{name}.json`.*"
    )


def quoted_sections(markdown: str) -> set[str]:
    figures = [match.group(1) for match in FIGURE.finditer(markdown)]
    tables = [QUOTED.findall(match.group(1))[0] for match in ROWS.finditer(markdown)]
    return {reference.split("/")[0] for reference in figures + tables}


def render(markdown: str, results: Path = RESULTS) -> str:
    """The page with every figure and run line filled in; raises MissingFigure for anything without a source."""
    missing_runs = quoted_sections(markdown) - {match.group(1) for match in RUN.finditer(markdown)}
    if missing_runs:
        raise MissingFigure(f"figures of {sorted(missing_runs)} are quoted without bench_run(...) beside them")
    markdown = FIGURE.sub(lambda match: figure(match.group(1), match.group(2), results), markdown)
    markdown = ROWS.sub(lambda match: rows(*_table_arguments(match.group(1)), results=results), markdown)
    return RUN.sub(lambda match: run_line(match.group(1), results), markdown)


def _table_arguments(arguments: str) -> tuple[str, list[str]]:
    reference, *columns = QUOTED.findall(arguments)
    return reference, columns


def on_pre_build(config: Any) -> None:
    section.cache_clear()  # `make docs` rebuilds on change: read the results again


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    try:
        return render(markdown)
    except MissingFigure as error:
        raise MissingFigure(f"{page.file.src_path}: {error}") from None
