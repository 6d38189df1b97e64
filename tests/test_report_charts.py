"""Report charts: valid small PNGs, byte-stable, Cyrillic without missing glyphs, odd input."""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from maild.reports import charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 60_000

DAYS = [(date(2025, 3, 1) + timedelta(days=n), 5 + n % 7, 3 + (n * 3) % 8) for n in range(92)]
SLA_ROWS = [("ООО «Ромашка»", 97.5, 88.0), ("ИП Сидоров", None, 71.0), ("АО «Вектор»", 64.0, None)]
LOAD_ROWS = [("Иванов Иван", 12, 3), ("Петрова Мария", 7, 0), ("Сидоров Пётр", 4, 4)]

CHARTS: dict[str, Callable[[str], bytes]] = {
    "volume_31_days": lambda lang: charts.volume_per_day(DAYS[:31], language=lang, title="Март"),
    "volume_quarter": lambda lang: charts.volume_per_day(DAYS, language=lang, title="I квартал"),
    "volume_week": lambda lang: charts.volume_per_day(DAYS[:7], language=lang),
    "sla": lambda lang: charts.sla_compliance(
        SLA_ROWS, language=lang, target=90, title="Соблюдение SLA"
    ),
    "load": lambda lang: charts.load_per_engineer(LOAD_ROWS, language=lang, title="Нагрузка"),
}


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must follow the signature directly."""
    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", png[16:24])
    (crc,) = struct.unpack(">I", png[29:33])
    assert crc == zlib.crc32(png[12:29])
    return width, height


def png_chunk_kinds(png: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        kinds.append(kind)
        offset += 12 + length
    return kinds


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("name", CHARTS)
def test_chart_is_small_png_of_fixed_size(name, language):
    png = CHARTS[name](language)
    assert png.startswith(PNG_SIGNATURE)
    assert png_size(png) == (720, 320)
    assert len(png) < MAX_BYTES
    assert png_chunk_kinds(png)[-1] == b"IEND"


@pytest.mark.parametrize("name", CHARTS)
def test_same_input_gives_same_bytes(name):
    assert CHARTS[name]("ru") == CHARTS[name]("ru")


def test_no_text_or_time_chunks():
    """No Software tag and no timestamp: golden copies of report mail stay stable."""
    for make in CHARTS.values():
        kinds = png_chunk_kinds(make("ru"))
        assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(kinds)


@pytest.mark.parametrize("name", CHARTS)
def test_cyrillic_renders_without_missing_glyph_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CHARTS[name]("ru")


def test_characters_the_font_lacks_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = charts.load_per_engineer([("王小明 🚀", 3, 1)], title="日报 🚀")
    assert png_size(png) == (720, 320)


def test_dollar_signs_are_plain_text_not_mathtext():
    """An `$\\frac{$` would make mathtext raise; names are shown as typed."""
    rows = [("ООО $Доллар", 50.0, 60.0), ("a_b $x^2$", 1.0, 2.0), ("$\\frac{$", 3.0, 4.0)]
    png = charts.sla_compliance(rows, title="Итоги в $\\frac{$")
    assert png.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "make",
    [
        lambda: charts.volume_per_day([]),
        lambda: charts.sla_compliance([], language="en", target=95, title="SLA"),
        lambda: charts.load_per_engineer([], title="Нагрузка"),
    ],
    ids=["volume", "sla", "load"],
)
def test_empty_input_draws_no_data_chart(make):
    png = make()
    assert png_size(png) == (720, 320)
    assert len(png) < MAX_BYTES


def test_empty_chart_differs_from_one_with_data():
    assert charts.load_per_engineer([]) != charts.load_per_engineer(LOAD_ROWS)


def test_no_data_words_follow_language():
    assert charts.volume_per_day([], language="ru") != charts.volume_per_day([], language="en")


def test_unknown_language_falls_back_to_english():
    assert charts.sla_compliance([], language="de") == charts.sla_compliance([], language="en")


def test_label_is_cut_to_28_characters_with_ellipsis():
    long = "Общество с ограниченной ответственностью «Ромашка»"
    label = charts._label(long)
    assert len(label) == 28
    assert label.endswith("…")
    assert charts._label("  Короткое\n имя ") == "Короткое имя"


LONG_NAMES = [f"Очень длинное имя инженера или организации номер {n:02d}" for n in range(40)]


def test_forty_long_names_are_cut_to_fifteen_sla_bars():
    rows = [(name, float(n), float(100 - n)) for n, name in enumerate(LONG_NAMES)]
    png = charts.sla_compliance(rows, target=80)
    assert png_size(png) == (720, 320)
    assert len(png) < MAX_BYTES
    # Rows past 15 are cut: changing them changes nothing but the "15 of N" note.
    changed = [*rows[:15], *[(name, 0.0, 0.0) for name, _, _ in rows[15:]]]
    assert charts.sla_compliance(changed, target=80) == png


def test_forty_engineers_become_fourteen_and_others():
    rows = [(name, 40 - n, (40 - n) // 3) for n, name in enumerate(LONG_NAMES)]
    png = charts.load_per_engineer(rows)
    assert png_size(png) == (720, 320)
    assert len(png) < MAX_BYTES
    # The tail is summed into "others": reshuffling its members changes nothing.
    tail = rows[14:]
    assert charts.load_per_engineer([*rows[:14], *reversed(tail)]) == png
    # Input order does not matter either: the busiest come first.
    assert charts.load_per_engineer(list(reversed(rows))) == png


def test_none_values_are_drawn_as_no_data_not_zero():
    with_none = charts.sla_compliance([("АО «Вектор»", None, None)], language="en")
    with_zero = charts.sla_compliance([("АО «Вектор»", 0.0, 0.0)], language="en")
    assert png_size(with_none) == (720, 320)
    assert with_none != with_zero


def test_out_of_range_values_degrade_instead_of_raising():
    png = charts.sla_compliance([("x", 140.0, -5.0)], target=120)
    assert png_size(png) == (720, 320)
    png = charts.load_per_engineer([("x", 3, 9), ("y", -1, -1)])
    assert png_size(png) == (720, 320)


def test_missing_days_count_as_zero():
    gappy = [(date(2025, 3, 1), 4, 2), (date(2025, 3, 3), 1, 1)]
    filled = [*gappy, (date(2025, 3, 2), 0, 0)]
    assert charts.volume_per_day(gappy) == charts.volume_per_day(filled)


def test_charts_drawn_in_threads_match_serial_ones():
    serial = [make("ru") for make in CHARTS.values()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda make: make("ru"), list(CHARTS.values()) * 2))
    assert parallel == serial * 2
