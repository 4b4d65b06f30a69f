#!/usr/bin/env python3
"""Writes charts/mom/dashboards/mom.json, the Grafana dashboard of the operator's metrics.

Edit the panel list here and rerun (`python3 hack/gen-dashboard.py`; `--check` fails when the
committed file differs, `make lint` runs it); tests/observability.rs
runs every panel's query against a real Prometheus scraping a running operator.
Queries use the variables $job, $instance (label filters) and $__rate_interval only.
"""
import json
import os
import sys

SEL = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"


def panel(title, desc, targets, unit="short", kind="timeseries", w=8, h=8, mappings=None, stack=False):
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
            for i, (expr, legend) in enumerate(targets)
        ],
        "_w": w,
        "_h": h,
    }
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                  "stacking": {"mode": "normal" if stack else "none"}}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


PRESSURE = [{"type": "value", "options": {
    "0": {"text": "low", "color": "green"}, "1": {"text": "medium", "color": "yellow"},
    "2": {"text": "high", "color": "orange"}, "3": {"text": "critical", "color": "red"}}}]

ROWS = [
    ("Overview", [
        panel("Leader", "1 on the replica holding the leader Lease (it binds, scales, auctions, deschedules), 0 on followers.",
              [(f'max by (instance) (mom_leader{{{SEL}}})', "{{instance}}")], kind="stat", w=6, h=5),
        panel("Replicas scraped", "Operator replicas Prometheus scrapes successfully (`up`).",
              [(f'sum(up{{{SEL}}})', "up")], kind="stat", w=6, h=5),
        panel("MomConfig generation in effect", "metadata.generation of the MomConfig `default` each replica acts on (-1: none). Replicas that disagree are still catching up.",
              [(f'max by (instance) (mom_config_generation{{{SEL}}})', "{{instance}}")], kind="stat", w=6, h=5),
        panel("Placement view", "Nodes and pods the placement view holds (what the extender places against).",
              [(f'max by (kind) (mom_view_objects{{{SEL}}})', "{{kind}}")], kind="stat", w=6, h=5),
    ]),
    ("Placement (scheduler extender)", [
        panel("Extender requests by verb", "Calls of the kube-scheduler extender per second: filter, prioritize, bind.",
              [(f'sum by (verb) (rate(mom_extender_request_duration_seconds_count{{{SEL}}}[{RI}]))', "{{verb}}")], unit="reqps"),
        panel("Extender latency p99 by verb", "Server-side 99th percentile duration of extender calls.",
              [(f'histogram_quantile(0.99, sum by (verb, le) (rate(mom_extender_request_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p99 {{verb}}"),
               (f'histogram_quantile(0.5, sum by (verb, le) (rate(mom_extender_request_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p50 {{verb}}")], unit="s"),
        panel("Decisions acted on by kind", "Decisions per second: bind (pods bound by the extender), scale_up, scale_down, rollout, failover and stranded (outage handling). A kind appears once it happened.",
              [(f'sum by (kind) (rate(mom_decisions_total{{{SEL}}}[{RI}]))', "{{kind}}")], unit="ops"),
    ]),
    ("Receipts", [
        panel("Receipts written by action", "Hash-chained Receipt CRs persisted per second, per action (spawn, bind, scale, allocate, evict, checkpoint, ...).",
              [(f'sum by (action) (rate(mom_receipts_written_total{{{SEL}}}[{RI}]))', "{{action}}")], unit="ops", stack=True),
        panel("Receipt chain head", "Sequence number of the newest receipt each replica persisted (-1: none yet). It only moves on the leader.",
              [(f'max by (instance) (mom_receipt_chain_head_sequence{{{SEL}}})', "{{instance}}")]),
        panel("Budget refusals", "Scale-ups refused or capped by MomConfig spec.budget.maxHourlyCost (each also writes a receipt).",
              [(f'sum(increase(mom_budget_refusals_total{{{SEL}}}[{RI}]))', "refusals")]),
    ]),
    ("Reconciliation", [
        panel("Reconciles by controller", "Reconciliations per second.",
              [(f'sum by (controller) (rate(mom_reconciles_total{{{SEL}}}[{RI}]))', "{{controller}}")], unit="ops"),
        panel("Reconcile errors by controller", "Failed reconciliations per second (e.g. a template that cannot become a pod, a refused receipt at full_audit).",
              [(f'sum by (controller) (rate(mom_reconcile_errors_total{{{SEL}}}[{RI}]))', "{{controller}}")], unit="ops"),
        panel("Reconcile duration p99", "99th percentile duration of reconciliations.",
              [(f'histogram_quantile(0.99, sum by (controller, le) (rate(mom_reconcile_duration_seconds_bucket{{{SEL}}}[{RI}])))', "{{controller}}")], unit="s"),
    ]),
    ("Scaling", [
        panel("Scaler evaluations by method and outcome", "Evaluations of agents with a scaling strategy per second: method (predictive, reactive, manual) and outcome (scaled_up, scaled_down, unchanged, query_failed, failed, receipt_failed, not_ready).",
              [(f'sum by (method, outcome) (rate(mom_scaling_decisions_total{{{SEL}}}[{RI}]))', "{{method}} {{outcome}}")], unit="ops", w=12),
        panel("Hourly cost of the agents", "Cost per hour of every GeometricAgent pod as the leader last priced it (node price label x share of the node).",
              [(f'max(mom_hourly_cost{{{SEL}}})', "cost/h")], w=12),
    ]),
    ("Auctions", [
        panel("Resource pressure per pool", "Pressure per node pool: 0 low, 1 medium, 2 high, 3 critical. At high and critical the pool's capacity is auctioned.",
              [(f'max by (pool) (mom_resource_pressure{{{SEL}}})', "{{pool}}")], mappings=PRESSURE, w=12),
        panel("Auctions per pool", "Capacity auctions run (ticks at high or critical pressure), per pool.",
              [(f'sum by (pool) (increase(mom_auctions_total{{{SEL}}}[{RI}]))', "{{pool}}")], w=12),
    ]),
    ("Descheduler", [
        panel("Descheduler planning time", "Time to plan one descheduling tick (p99 and p50). Present when the operator runs with --deschedule or --deschedule-dry-run; evictions show as `evict` receipts above.",
              [(f'histogram_quantile(0.99, sum by (le) (rate(mom_descheduler_plan_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p99"),
               (f'histogram_quantile(0.5, sum by (le) (rate(mom_descheduler_plan_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p50")], unit="s", w=12),
        panel("Evictions blocked by a PodDisruptionBudget", "Evictions the descheduler wanted but a PodDisruptionBudget refused.",
              [(f'sum(increase(mom_descheduler_evictions_blocked_total{{{SEL}}}[{RI}]))', "blocked")], w=12),
    ]),
    ("Leader loops", [
        panel("Loop ticks by loop", "Ticks per second of the leader loops (scaler, auction, descheduler, status, ...) on the leader.",
              [(f'sum by (loop) (rate(mom_loop_ticks_total{{{SEL}}}[{RI}]))', "{{loop}}")], unit="ops", w=12),
        panel("Loop period by loop", "Seconds between two ticks of each loop now (flag, MomConfig spec.tickSeconds or built-in).",
              [(f'max by (loop) (mom_loop_period_seconds{{{SEL}}})', "{{loop}}")], unit="s", w=12),
    ]),
    ("Process", [
        panel("Resident memory", "Resident set size of each operator process.",
              [(f'max by (instance) (mom_process_resident_memory_bytes{{{SEL}}})', "{{instance}}")], unit="bytes", w=12),
        panel("CPU", "CPU cores used by each operator process (user + system).",
              [(f'sum by (instance) (rate(mom_process_cpu_seconds_total{{{SEL}}}[{RI}]))', "{{instance}}")], unit="percentunit", w=12),
    ]),
]


def build():
    panels, y, pid = [], 0, 1
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "id": pid,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x, row_h = 0, 0
        for p in row:
            w, h = p.pop("_w"), p.pop("_h")
            if x + w > 24:
                x, y = 0, y + row_h
                row_h = 0
            p["id"] = pid
            p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            pid += 1
            x += w
            row_h = max(row_h, h)
            panels.append(p)
        y += row_h
    return {
        "title": "MOM operator",
        "uid": "mom-operator",
        "description": "Placement, receipts, scaling, auctions, descheduler, leader loops and process of the MOM operator. Generated by hack/gen-dashboard.py.",
        "tags": ["mom", "kubernetes"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "job", "label": "Job", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(mom_leader, job)", "refId": "job"},
             "definition": "label_values(mom_leader, job)", "refresh": 2, "includeAll": False, "multi": False,
             "current": {}, "hide": 0, "sort": 1},
            {"name": "instance", "label": "Replica", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": 'label_values(mom_leader{job=~"$job"}, instance)', "refId": "instance"},
             "definition": 'label_values(mom_leader{job=~"$job"}, instance)', "refresh": 2, "includeAll": True,
             "allValue": ".*", "multi": True, "current": {}, "hide": 0, "sort": 1},
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "charts", "mom", "dashboards", "mom.json")
    text = json.dumps(build(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        with open(out) as f:
            if f.read() != text:
                sys.exit(f"{out} is stale: run 'python3 hack/gen-dashboard.py' and commit")
        sys.exit(0)
    with open(out, "w") as f:
        f.write(text)
    print(out)
