"""A report's figures as text, CSV and HTML (charts inline), in Russian or English.

The JSON of `maild.reports.figures.report` is the one source; every other format is
derived from it, so they cannot disagree. CSV is UTF-8 with a byte-order mark and `;`
between fields: what Excel in a Russian locale opens by a double click with Cyrillic intact
(LibreOffice asks and takes it as well).
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Mapping
from datetime import date
from typing import Any

from maild.compose import CHANNEL_LABELS, CLOSE_LABELS, template_environment

LABELS: dict[str, dict[str, Any]] = {
    "ru": {
        "title": {
            "monthly": "Отчёт технической поддержки за {period}",
            "quarterly": "Квартальный отчёт технической поддержки за {period}",
        },
        "created": "Новых обращений",
        "closed": "Закрыто",
        "open_at_end": "Открыто на конец периода",
        "first_response": "Первый ответ",
        "next_responses": "Последующие ответы",
        "reopen_rate": "Открыто повторно, %",
        "resolution": "Решение",
        "median": "медиана",
        "p90": "90-й перцентиль",
        "minutes": "раб. мин",
        "compliance": "Соблюдение SLA",
        "breached_open": "Открытых с нарушенным сроком",
        "organization": "Организация",
        "engineer": "Инженер",
        "channel": "Канал",
        "criticality": "Критичность",
        "reasons": "Причины закрытия",
        "plans": "План и факт",
        "previous": "пред. период",
        "change": "изменение",
        "met": "выполнен",
        "missed": "не выполнен",
        "no_data": "нет данных",
        "volume": "Обращения по дням",
        "load": "Нагрузка инженеров (открытые на конец периода)",
        "sla_chart": "Соблюдение SLA по договорам, %",
        "section": "раздел",
        "metric": "показатель",
        "value": "значение",
    },
    "en": {
        "title": {
            "monthly": "Technical support report for {period}",
            "quarterly": "Quarterly technical support report for {period}",
        },
        "created": "New tickets",
        "closed": "Closed",
        "open_at_end": "Open at period end",
        "first_response": "First response",
        "next_responses": "Next responses",
        "reopen_rate": "Reopened, %",
        "resolution": "Resolution",
        "median": "median",
        "p90": "90th percentile",
        "minutes": "working min",
        "compliance": "SLA compliance",
        "breached_open": "Open past due",
        "organization": "Organisation",
        "engineer": "Engineer",
        "channel": "Channel",
        "criticality": "Criticality",
        "reasons": "Closing reasons",
        "plans": "Plan and fact",
        "previous": "previous period",
        "change": "change",
        "met": "met",
        "missed": "missed",
        "no_data": "no data",
        "volume": "Tickets per day",
        "load": "Engineers' load (open at period end)",
        "sla_chart": "SLA compliance by contract, %",
        "section": "section",
        "metric": "metric",
        "value": "value",
    },
}


def _number(value: Any, labels: Mapping[str, Any]) -> str:
    if value is None:
        return str(labels["no_data"])
    return f"{value:g}" if isinstance(value, float) else str(value)


def _change(now: Any, before: Any) -> str:
    if now is None or before is None:
        return ""
    delta = now - before
    return f"{delta:+g}" if isinstance(delta, float) else f"{delta:+d}"


def summary_rows(report: Mapping[str, Any], language: str) -> list[tuple[str, str, Any, Any]]:
    """(section, metric, value, previous value): the shared spine of text and CSV."""
    labels, before = LABELS[language], report["previous"]
    rows: list[tuple[str, str, Any, Any]] = []
    for key in ("created", "closed", "open_at_end"):
        rows.append(("tickets", labels[key], report["tickets"][key], before["tickets"][key]))
    for clock in ("first_response_minutes", "resolution_minutes"):
        name = labels[clock.removesuffix("_minutes")]
        for stat in ("median", "p90"):
            rows.append(
                (
                    clock,
                    f"{name}, {labels[stat]} ({labels['minutes']})",
                    report[clock][stat],
                    before[clock][stat],
                )
            )
    for clock in ("first_response", "next_responses", "resolution"):
        rows.append(
            (
                "sla_compliance",
                f"{labels['compliance']}: {labels[clock]}, %",
                report["sla_compliance"][clock],
                before["sla_compliance"][clock],
            )
        )
    rows.append(
        (
            "sla_compliance",
            labels["breached_open"],
            report["breached_open"],
            before["breached_open"],
        )
    )
    rows.append(("tickets", labels["reopen_rate"], report["reopen_rate"], before["reopen_rate"]))
    return rows


def as_text(report: Mapping[str, Any], language: str = "ru") -> str:
    labels = LABELS[language]
    lines = [labels["title"][report["kind"]].format(period=report["period"]), ""]
    for _, metric, value, previous in summary_rows(report, language):
        change = _change(value, previous)
        before = _number(previous, labels) + (f", {change}" if change else "")
        tail = f"   ({labels['previous']}: {before})"
        lines.append(f"{metric}: {_number(value, labels)}{tail}")
    lines += ["", f"{labels['organization']}:"]
    for row in report["by_organization"]:
        sla = row["sla_compliance"] or {}
        compliance = (
            (
                f"   SLA {_number(sla.get('first_response'), labels)} / "
                f"{_number(sla.get('resolution'), labels)} %"
            )
            if sla
            else ""
        )
        lines.append(f"  {row['name']}: +{row['created']} −{row['closed']}{compliance}")
    lines += ["", f"{labels['engineer']}:"]
    for row in report["by_engineer"]:
        lines.append(
            f"  {row['name'] or row['email']}: +{row['created']} −{row['closed']}, "
            f"{labels['open_at_end'].lower()} {row['open_at_end']}"
        )
    for title, key, names in (
        ("channel", "by_channel", CHANNEL_LABELS[language]),
        ("criticality", "by_criticality", {}),
        ("reasons", "closing_reasons", CLOSE_LABELS[language]),
    ):
        if report[key]:
            lines += ["", f"{labels[title]}:"]
            lines += [f"  {names.get(name, name)}: {count}" for name, count in report[key].items()]
    if report["plans"]:
        lines += ["", f"{labels['plans']}:"]
        for plan in report["plans"]:
            verdict = (
                labels["met"]
                if plan["met"]
                else labels["missed"]
                if plan["met"] is False
                else labels["no_data"]
            )
            scope = f" ({plan['contract']})" if plan["contract"] else ""
            lines.append(
                f"  {plan['metric']}{scope}: {_number(plan['target'], labels)} → "
                f"{_number(plan['actual'], labels)} — {verdict}"
            )
    return "\n".join(lines) + "\n"


def as_csv(report: Mapping[str, Any], language: str = "ru") -> bytes:
    labels = LABELS[language]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        [labels["section"], labels["metric"], labels["value"], labels["previous"], labels["change"]]
    )
    for section, metric, value, previous in summary_rows(report, language):
        writer.writerow([section, metric, _csv(value), _csv(previous), _change(value, previous)])
    for row in report["by_organization"]:
        for key in ("created", "closed"):
            writer.writerow(["by_organization", f"{row['name']}: {labels[key]}", row[key], "", ""])
    for row in report["by_engineer"]:
        for key in ("created", "closed", "open_at_end"):
            writer.writerow(
                ["by_engineer", f"{row['name'] or row['email']}: {labels[key]}", row[key], "", ""]
            )
    for key in ("by_channel", "by_criticality", "closing_reasons"):
        for name, count in report[key].items():
            writer.writerow([key, name, count, report["previous"][key].get(name, 0), ""])
    for plan in report["plans"]:
        scope = f" ({plan['contract']})" if plan["contract"] else ""
        writer.writerow(
            [
                "plans",
                plan["metric"] + scope,
                _csv(plan["actual"]),
                _csv(plan["target"]),
                plan["met"],
            ]
        )
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def _csv(value: Any) -> str:
    """Decimal comma for Russian spreadsheets is not assumed: numbers as Python writes them."""
    return "" if value is None else str(value)


def _image_source(name: str, png: bytes, images: str) -> str:
    if images == "cid":
        return f"cid:{name}"
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_charts(report: Mapping[str, Any], language: str = "ru") -> dict[str, bytes]:
    """PNG charts by content id (matplotlib is imported here, not by every CLI command)."""
    from maild.reports import charts  # 0.3 s of import, paid only where charts are drawn

    labels = LABELS[language]
    organizations = [
        (row["name"], row["sla_compliance"]["first_response"], row["sla_compliance"]["resolution"])
        for row in report["by_organization"]
        if row["sla_compliance"]
    ]
    engineers = [
        (row["name"] or row["email"], row["open_at_end"], 0) for row in report["by_engineer"]
    ]
    return {
        "volume": charts.volume_per_day(
            [(date.fromisoformat(day), new, done) for day, new, done in report.get("per_day", [])],
            language=language,
            title=labels["volume"],
        ),
        "sla": charts.sla_compliance(organizations, language=language, title=labels["sla_chart"]),
        "load": charts.load_per_engineer(engineers, language=language, title=labels["load"]),
    }


def as_html(
    report: Mapping[str, Any], language: str = "ru", *, images: str = "cid"
) -> tuple[str, dict[str, bytes]]:
    """The HTML and its charts; `images="cid"` for mail (multipart/related), "data" for a file."""
    pictures = report_charts(report, language)
    sources = {name: _image_source(name, png, images) for name, png in pictures.items()}
    html = (
        template_environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            labels=LABELS[language],
            rows=summary_rows(report, language),
            images=sources,
            change=_change,
            number=lambda value: _number(value, LABELS[language]),
            language=language,
        )
    )
    return html, pictures
