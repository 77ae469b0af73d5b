"""Benchmark figures in the docs are rendered from the committed results: a figure without a source, or quoted
without its run, stops the build (scripts/docs_bench.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import docs_bench
from scripts.benchlib import run_metadata

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    docs_bench.section.cache_clear()
    section = {
        "run": run_metadata(),
        "results": {
            "model": "seed",
            "promoted": True,
            "single": {"p50_ms": 1.2345, "p99_ms": 9.5},
            "draws": [{"recall": [0.92, 0.95]}],
            "band": {"note": "not a row", "[0.2, 0.8]": {"in_band": {"mean": 0.01, "std": 0.0019}, "n": 3}},
        },
    }
    (tmp_path / "api.json").write_text(json.dumps(section))
    yield tmp_path
    docs_bench.section.cache_clear()


def test_render_fills_figures_tables_and_the_run_line(results: Path) -> None:
    # Given a page quoting a figure, a formatted figure and a table of one section, with its run line
    page = (
        '{{ bench_run("api") }}\n{{ bench("api/single/p50_ms") }} ms, {{ bench("api/single/p99_ms", ".0f") }}, '
        '{{ bench("api/draws/0/recall/1") }}, {{ bench("api/promoted") }}\n'
        '{{ bench_rows("api/band", "in_band|.1%", "n") }}'
    )
    # When it is rendered
    rendered = docs_bench.render(page, results)
    # Then the figures are the section's, rows skip entries that are not objects, and the run is named
    run, figures, table = rendered.splitlines()
    assert figures == "1.2345 ms, 10, 0.95, yes"
    assert table == "| [0.2, 0.8] | 1.0% ± 0.2% | 3 |"
    assert "at commit" in run and "CPUs" in run and "bench-results/api.json" in run


@pytest.mark.parametrize(
    "page",
    [
        '{{ bench_run("api") }} {{ bench("api/single/p75_ms") }}',  # no such key
        '{{ bench_run("quality") }} {{ bench("quality/items") }}',  # no such section file
        '{{ bench_run("api") }} {{ bench("api/single") }}',  # not a single figure
        '{{ bench_run("api") }} {{ bench("api/draws/1/recall/0") }}',  # no such row
        '{{ bench("api/single/p50_ms") }}',  # quoted without its run beside it
    ],
)
def test_render_refuses_a_figure_without_a_source(results: Path, page: str) -> None:
    # Given a page quoting something the results cannot back
    # When it is rendered, Then the build is stopped with the reason
    with pytest.raises(docs_bench.MissingFigure):
        docs_bench.render(page, results)


def test_section_without_run_metadata_is_refused(tmp_path: Path) -> None:
    # Given results written before runs carried their date, commit and machine
    (tmp_path / "old.json").write_text(json.dumps({"single": {"p50_ms": 1.0}}))
    # When a page quotes them, Then they are refused: a figure must say which run it comes from
    with pytest.raises(docs_bench.MissingFigure, match="run metadata"):
        docs_bench.render('{{ bench_run("old") }} {{ bench("old/single/p50_ms") }}', tmp_path)


def test_docs_every_quoted_figure_has_a_source_in_the_committed_results() -> None:
    # Given every page of the docs and the committed bench-results/
    docs_bench.section.cache_clear()
    for page in sorted((ROOT / "docs").glob("*.md")):
        # When it is rendered, Then every figure resolves (MissingFigure names the page's first one that does not)
        rendered = docs_bench.render(page.read_text())
        assert "{{" not in rendered, f"{page.name} holds a placeholder the renderer does not know"
