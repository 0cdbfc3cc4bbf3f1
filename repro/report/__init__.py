"""The report: documented vs measured, one row per (model, protocol).

- `table`: `build_report` -> `Report` (plain rows; `Report.to_frame()` for pandas users), the
  status words and counts, the columns;
- `render`: markdown, CSV, JSON, HTML and the Δ plot of a `Report`.

    from repro.report import build_report, render_markdown
"""

from repro.report.render import render_csv, render_html, render_json, render_markdown  # noqa: F401
from repro.report.table import Report, build_report  # noqa: F401
