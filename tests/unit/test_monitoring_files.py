"""The sample Grafana dashboard and the alert rules use metrics Lethe exports, and docs/operations.md lists
every metric Lethe exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("api/metrics.py", "core/jobs/metrics.py", "worker/monitoring.py")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _exported() -> dict[str, str]:
    """Metric name -> how it is exported: counters gain `_total`, histograms `_bucket/_count/_sum`."""
    out: dict[str, str] = {}
    for source in SOURCES:
        text = (ROOT / source).read_text()
        for kind, name in re.findall(r'\b(Counter|Histogram|GaugeMetricFamily)\(\s*"(lethe_[a-z_]+)"', text):
            out[name + "_total" if kind == "Counter" else name] = kind
    return out


def _series(name: str, exported: dict[str, str]) -> bool:
    if name in exported:
        return True
    return any(name.endswith(s) and exported.get(name[: -len(s)]) == "Histogram" for s in SUFFIXES[1:])


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\blethe_[a-z_]+", expr))


def test_the_sources_export_what_the_docs_promise() -> None:
    exported = _exported()
    assert {"lethe_http_requests_total", "lethe_worker_jobs_total", "lethe_worker_stage_duration_seconds",
            "lethe_worker_lease_losses_total", "lethe_worker_queue_depth", "lethe_worker_gpu_memory_bytes",
            "lethe_requests_overdue", "lethe_leases_expired"} <= set(exported)
    doc = (ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in exported if f"`{name}`" not in doc]
    assert not missing, f"docs/operations.md does not list {missing}"


def test_dashboard_panels_query_exported_metrics() -> None:
    exported = _exported()
    dashboard = json.loads((ROOT / "docs" / "monitoring" / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and dashboard["templating"]["list"][0]["type"] == "datasource"
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"] and {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            names = _names(target["expr"])
            assert names, target
            assert all(_series(n, exported) for n in names), (panel["title"], names)
            used |= names
    assert {"lethe_worker_jobs_total", "lethe_worker_gpu_memory_bytes", "lethe_requests_overdue"} <= used


def test_alert_rules_cover_overdue_requests_stuck_leases_and_failure_rate() -> None:
    exported = _exported()
    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "prometheus-alerts.yml").read_text())
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"page", "warn"} and rule["annotations"]["summary"]
        assert all(_series(n, exported) for n in _names(rule["expr"])), rule
    assert "lethe_requests_overdue" in alerts["LetheRequestsOverdue"]["expr"]
    assert "lethe_leases_expired" in alerts["LetheLeasesStuck"]["expr"]
    assert 'outcome="failed"' in alerts["LetheJobFailureRate"]["expr"]
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert all(f"`{name}`" in doc for name in alerts), "docs/operations.md lists every alert"
