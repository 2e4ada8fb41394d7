"""The audit report (reports/report.md, reports/plots/, reports/metrics.json).

- `inputs`: what the report reads (every stage's JSON);
- `verdicts`: the first screen as data (one verdict per question, the answer, the headline metrics);
- `sections`: the Markdown sections rendered from them; `loss`: the validation-loss section's words;
- `plots`, `markdown`, `provenance`: figures, table helpers, where a result came from;
- `document`: the whole report, written atomically (`write_report`).
"""
