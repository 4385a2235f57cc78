"""Staff reports at /staff/reports: tables, server-drawn charts, and each table as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from flask import Blueprint, Response, current_app, render_template, request, url_for

from membership.accounts.access import staff_required
from membership.database import utcnow
from membership.extensions import db
from membership.reports.rules import DateRange, RangeError, parse_range
from membership.reports.tables import REPORTS

bp = Blueprint("reports", __name__, url_prefix="/staff/reports")


@bp.after_request
def never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _period() -> DateRange:
    return parse_range(request.args.get("from"), request.args.get("to"), utcnow().date())


@bp.get("")
@staff_required
def dashboard() -> tuple[str, int] | str:
    try:
        period = _period()
    except RangeError as exc:
        return render_template(
            "reports/dashboard.html",
            error=str(exc),
            start=request.args.get("from", ""),
            end=request.args.get("to", ""),
            tables=[],
        ), 400
    grace = current_app.config["GRACE_PERIOD_DAYS"]
    tables = [build(db.session, period, grace) for build in REPORTS.values()]
    query = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    return render_template(
        "reports/dashboard.html",
        error=None,
        start=query["from"],
        end=query["to"],
        tables=tables,
        csv_urls={t.name: url_for(f"reports.{t.name}_csv", **query) for t in tables},
    )


def _csv_view(name: str) -> Callable[[], Response]:
    def download() -> Response:
        try:
            period = _period()
        except RangeError as exc:
            return Response(str(exc) + "\n", status=400, mimetype="text/plain")
        table = REPORTS[name](db.session, period, current_app.config["GRACE_PERIOD_DAYS"])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(table.headers)
        writer.writerows(table.rows)
        filename = f"{name}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    download.__name__ = f"{name}_csv"
    return download


for _name in REPORTS:
    bp.add_url_rule(f"/{_name}.csv", view_func=staff_required(_csv_view(_name)))
