"""The README's benchmark tables are the ones the benchmarks generate from their JSON, never typed:
each Markdown file under benchmarks/ is what its formatter makes of its JSON, and every line
of its table appears in the README or in the documentation pages (docs/*.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _formatters():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import arch_matrix
    import cam_libraries
    import browser_latency
    import chaos
    import lime_samples
    import occlusion_budget
    import replicas
    import soak
    import study_analysis

    from ic_zoo.research import bench, explain_bench, explain_parts, explain_photos, latency, trust_agreement

    # (the Markdown file, the JSON it is made from, the formatter): one explain-bench run makes three
    return [("capacity_cpu", "capacity_cpu", replicas.capacity_table),
            ("explain_bench", "explain_bench", explain_bench.format_markdown),
            ("explain_parts", "explain_bench", explain_parts.format_markdown),
            ("occlusion_fast_vs_exhaustive", "explain_bench", explain_bench.format_occlusion_markdown),
            ("latency_cpu", "latency_cpu", latency.format_markdown),
            ("edit_lite_cpu", "edit_lite_cpu", bench.format_markdown),
            ("lime_samples", "lime_samples", lime_samples.format_table),
            ("arch_matrix", "arch_matrix", arch_matrix.format_table),
            ("chaos_cpu", "chaos_cpu", chaos.table),
            ("soak_cpu", "soak_cpu", soak.table),
            ("soak_768_cpu", "soak_768_cpu", soak.table),
            ("occlusion_budget", "occlusion_budget", occlusion_budget.table),
            ("study_analysis", "study_analysis", study_analysis.table),
            ("explain_photos", "explain_photos", explain_photos.format_markdown),
            ("cam_libraries", "cam_libraries", cam_libraries.table),
            ("explain_photos_photos", "explain_photos", explain_photos.photo_table),
            ("explain_bench_parts5c", "explain_bench_parts5c", explain_bench.format_markdown),
            ("explain_parts_parts5c", "explain_bench_parts5c", explain_parts.format_markdown),
            ("trust_agreement", "trust_agreement", trust_agreement.format_markdown),
            ("browser_lite_stages", "browser_lite_cpu", browser_latency.stage_table),
            ("browser_flower2d_stages", "browser_flower2d_cpu", browser_latency.stage_table)]


@pytest.mark.parametrize("stem,source,fmt", _formatters(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_readme_tables_are_generated_from_the_json(stem, source, fmt):
    doc = json.loads((ROOT / "benchmarks" / f"{source}.json").read_text())
    md = (ROOT / "benchmarks" / f"{stem}.md").read_text()
    assert fmt(doc).strip() == md.strip(), f"benchmarks/{stem}.md is not what its JSON gives; regenerate it"
    readme = (ROOT / "README.md").read_text()
    docs = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    missing = [line for line in md.splitlines() if line.startswith("|") and line not in readme and line not in docs]
    assert not missing, f"neither README nor docs/*.md has these lines of benchmarks/{stem}.md: {missing[:3]}"


#: the browser benchmark's runs, in the order of the README's table
BROWSER_RUNS = ["browser_flower2d_cpu", "browser_lite_cpu", "browser_flower2d_burn_cpu", "browser_lite_burn_cpu"]


#: the API benchmark's runs, in the order of its table (benchmarks/app_latency_cpu.md)
API_RUNS = ["app_flower2d_cpu", "app_imagenet_cpu", "app_lite_cpu"]


def test_the_api_latency_table_is_generated_from_its_runs():
    """The API's latency table (the README's and the docs'), with the plain-HTTP columns, is what its runs give."""
    _formatters()  # (puts benchmarks/ on the path)
    import app_latency

    md = app_latency.markdown_table([ROOT / "benchmarks" / f"{r}.json" for r in API_RUNS])
    assert md.strip() == (ROOT / "benchmarks" / "app_latency_cpu.md").read_text().strip(), "regenerate it"
    for page in (ROOT / "README.md", ROOT / "docs" / "benchmarks.md"):
        missing = [line for line in md.splitlines() if line.startswith("|") and line not in page.read_text()]
        assert not missing, f"{page.name}'s API latency table is not what the runs give: {missing[:2]}"


def test_the_stroke_latency_table_is_generated_from_its_runs():
    """The README's stroke latency table, with its budget column, is what the browser benchmark's runs give."""
    _formatters()  # (puts benchmarks/ on the path)
    import browser_latency

    md = browser_latency.markdown_table([ROOT / "benchmarks" / f"{r}.json" for r in BROWSER_RUNS])
    readme = (ROOT / "README.md").read_text()
    missing = [line for line in md.splitlines() if line.startswith("|") and line not in readme]
    assert not missing, f"the README's stroke latency table is not what the runs give: {missing[:2]}"
    lite = json.loads((ROOT / "benchmarks" / "browser_lite_cpu.json").read_text())
    assert lite["budget"] == browser_latency.budget(lite)  # (the run's own verdict is the table's)
