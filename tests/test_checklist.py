"""The pre-contact checklist: which items real requests carry, and what the acknowledgement asks for."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers import checklist
from parsers.checklist import (
    ChecklistItem,
    find_checklist_facts,
    merge_present,
    missing_from,
    missing_items,
    stored_facts,
)
from parsers.types import ArtifactKind

V, E, S, T, P, L = "version", "environment", "scenario", "error_text", "screenshots", "logs"
SHOT, LOG, DUMP = ArtifactKind.SCREENSHOT, ArtifactKind.LOG, ArtifactKind.DUMP
ZIP = ArtifactKind.ARCHIVE

CASES = [
    pytest.param(
        "Здравствуйте!\nCubisio 3.2.1, Windows Server 2019, PostgreSQL 14.\n"
        "Шаги:\n1. Открыть отчёт «Продажи».\n2. Нажать «Экспорт в Excel».\n"
        "Появляется ошибка: «Недостаточно памяти для выполнения операции».\n"
        "Скриншот и журнал во вложении.",
        [SHOT, LOG], set(), id="ru_complete_request",
    ),
    pytest.param(
        "Добрый день. У нас ничего не работает, срочно помогите!",
        [], {V, E, S, T, P, L}, id="ru_nothing_at_all",
    ),
    pytest.param(
        "Версия 3.1.4 перестала открывать проекты.",
        [], {E, S, T, P, L}, id="ru_version_only",
    ),
    pytest.param(
        "После обновления до сборки 1250 при открытии дашборда Яндекс.Браузер показывает белый экран.",
        [], {T, P, L}, id="ru_build_number_yandex_browser",
    ),
    pytest.param(
        "Hi,\nwe run Cubisio 4.0.2 on Ubuntu 22.04 with Postgres Pro 15.\n"
        "When I click Publish the page shows \"Internal error, contact administrator\".\n"
        "Log attached.",
        [LOG], {P}, id="en_publish_internal_error",
    ),
    pytest.param(
        "Chrome version 120.0.6099 freezes on the login page.",
        [], {V, S, T, P, L}, id="en_browser_version_is_not_product_version",
    ),
    pytest.param(
        "ОС Astra Linux SE 1.7, Firefox ESR.\n"
        "Сценарий: открываю куб, меняю фильтр — данные не обновляются.",
        [], {V, T, P, L}, id="ru_astra_linux_scenario",
    ),
    pytest.param(
        "Cubisio 3.2 упал ночью, вот что в консоли сервера:\n"
        "java.lang.NullPointerException\n"
        "\tat ru.sis.cubisio.report.ReportBuilder.build(ReportBuilder.java:42)\n"
        "\tat ru.sis.cubisio.report.Scheduler.run(Scheduler.java:118)\n"
        "Дамп памяти прикладываю.",
        [DUMP], {E, S, P}, id="ru_java_stack_trace_with_dump",
    ),
    pytest.param(
        "Traceback (most recent call last):\n"
        '  File "/opt/cubisio/tools/import.py", line 10, in <module>\n'
        "    main()\n"
        "ValueError: bad header",
        [], {V, E, S, P, L}, id="en_python_traceback_only",
    ),
    pytest.param(
        "При сохранении дашборда сервер возвращает HTTP 500. Браузер Microsoft Edge 119.",
        [SHOT], {V, L}, id="ru_http_500_edge",
    ),
    pytest.param(
        "После того, как выгружаешь отчёт в PDF, всплывает окно с текстом «Отчёт не сформирован».\n"
        "Версия: 3.0.5",
        [], {E, P, L}, id="ru_popup_text_in_quotes",
    ),
    pytest.param(
        "Сервис выдаёт «Нет доступа к источнику данных» после входа под своей учётной записью.",
        [], {V, E, P, L}, id="ru_yo_spelling_tolerated",
    ),
    pytest.param(
        "1) Open Reports\n2) Click Export\nNothing happens. Windows 11, Chrome.",
        [], {V, T, P, L}, id="en_numbered_steps_on_lines",
    ),
    pytest.param(
        "См. вложение.",
        [SHOT, ZIP], {V, E, S, T}, id="ru_attachments_only_zip_counts_as_logs",
    ),
    pytest.param(
        "Прикладываю отчёт о конфигурации и инструкцию.",
        [ArtifactKind.CONFIG, ArtifactKind.DOCUMENT], {V, E, S, T, P, L},
        id="ru_config_and_document_are_not_logs",
    ),
    pytest.param(
        "It's an edge case: the totals differ by one cent in Cubisio 3.2.",
        [], {E, S, T, P, L}, id="en_edge_the_noun_is_not_a_browser",
    ),
    pytest.param(
        "All report windows close at once in v3.1.0.",
        [], {E, S, T, P, L}, id="en_windows_the_noun_is_not_an_os",
    ),
    pytest.param(
        "Windows 10 build 19045, Cubisio не запускается.",
        [], {V, S, T, P, L}, id="ru_windows_build_is_not_product_build",
    ),
    pytest.param(
        "Кубисио Server 3.4.1 на PostgreSQL версии 14.5, после перезапуска службы отчёты пустые.",
        [], {T, P, L}, id="ru_product_edition_and_dbms_version",
    ),
    pytest.param(
        "All dashboards work with the exception of the sales one. Cubisio 3.3, Safari 17 on macOS.",
        [], {S, T, P, L}, id="en_with_the_exception_of_is_not_an_error",
    ),
    pytest.param(
        "Установщик завершился с кодом 0x80070643 на Windows 10.",
        [], {V, S, P, L}, id="ru_windows_installer_hex_code",
    ),
    pytest.param(
        "Oracle 19c, при подключении источника ORA-12541: TNS:no listener",
        [], {V, P, L}, id="ru_oracle_error_code",
    ),
    pytest.param(
        "Product: Cubisio build 5120\n"
        "OS: Windows Server 2022, SQL Server 2019\n"
        "Steps to reproduce:\n"
        "1. Log in as admin\n"
        "2. Open Settings > Users\n"
        "Actual: error \"Access is denied\"\n"
        "Screenshot and logs attached.",
        [SHOT, LOG, LOG], set(), id="en_complete_template",
    ),
    pytest.param(
        "Меню Отчёты → Продажи → Печать не работает, Cubisio 3.2.2",
        [], {E, T, P, L}, id="ru_menu_path_is_a_scenario",
    ),
    pytest.param(
        "Сначала выбираю период, затем нажимаю «Обновить» — и всё висит. Сборка 3.2.0.145.",
        [], {E, T, P, L}, id="ru_first_then_steps_quoted_button_is_not_error",
    ),
    pytest.param(
        "The app hangs upon clicking Save. Firefox 121, Linux Mint.",
        [], {V, T, P, L}, id="en_upon_clicking",
    ),
    pytest.param(
        "В консоли браузера: Uncaught TypeError: Cannot read properties of undefined (reading 'id')",
        [SHOT], {V, E, S, L}, id="ru_browser_console_error",
    ),
    pytest.param(
        "Выдаёт ошибку при печати.",
        [], {V, E, T, P, L}, id="ru_error_named_but_not_copied",
    ),
    pytest.param(
        "Порядок: 1. войти под admin 2. открыть куб «Склад». Сообщение: «Куб недоступен».\n"
        "Версия 3.2.1, Windows 11.",
        [], {P, L}, id="ru_inline_numbered_steps",
    ),
    pytest.param(
        "Дамп памяти приложил, Cubisio 3.5.0 на РЕД ОС 7.3.",
        [DUMP], {S, T, P}, id="ru_red_os_dump",
    ),
    pytest.param(
        "Good afternoon,\nafter I upload a CSV the import fails with \"Unexpected column 'date'\".\n"
        "We use Cubisio 3.2.4 and MS SQL 2017.\n\nBest regards,\nJohn",
        [], {P, L}, id="en_import_fails_with_quote",
    ),
    pytest.param(
        "Коллеги, добрый день! Не строится отчёт. Очень ждём ответа, спасибо.",
        [SHOT], {V, E, S, T, L}, id="ru_screenshot_only",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "kinds", "missing"), CASES)
def test_missing_items_for_real_requests(text, kinds, missing):
    facts = find_checklist_facts(text, kinds)
    assert {str(item) for item in missing_items(facts)} == missing


def test_missing_items_keep_the_checklist_order():
    facts = find_checklist_facts("Не работает.", [])
    assert missing_items(facts) == tuple(ChecklistItem)
    assert [str(item) for item in missing_items(facts)] == [V, E, S, T, P, L]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Cubisio 3.2.1 падает", "3.2.1"),
        ("сборка 1234", "1234"),
        ("Build: 5120", "5120"),
        ("у нас v3.2.1-rc1", "3.2.1-rc1"),
        ("Версия: 3.0.5", "3.0.5"),
        ("версией 3.1 пользуемся", "3.1"),
        ("Кубисио Server 3.4.1 на PostgreSQL версии 14.5", "3.4.1"),
        ("PostgreSQL версии 14.5, а продукт версии 3.4", "3.4"),
        ("версия 3.1 клиента, сервер Cubisio 3.2", "3.2"),
        ("Chrome version 120.0.6099", None),
        ("Windows 10 build 19045", None),
        ("Windows 11 Pro 23H2 build 22631", None),
        ("версия 14", None),
        ("Cubisio с 2023 года", None),
        ("", None),
    ],
)
def test_product_version_is_reported_as_written(text, version):
    facts = find_checklist_facts(text, [])
    assert facts.product_version == version
    assert (ChecklistItem.VERSION in facts.present) is (version is not None)


def test_kinds_given_as_a_generator_and_as_plain_strings():
    facts = find_checklist_facts("", (kind for kind in [ArtifactKind("log"), "screenshot"]))
    assert missing_items(facts) == (
        ChecklistItem.VERSION, ChecklistItem.ENVIRONMENT, ChecklistItem.SCENARIO,
        ChecklistItem.ERROR_TEXT,
    )  # fmt: skip


# Inputs shaped to make a careless pattern backtrack: long runs of what the keywords and gaps match.
HOSTILE = [
    "a" * 100_000,
    " " * 100_000,
    "\n" * 100_000,
    " \t\n" * 33_000,
    "1. a " * 20_000,
    "1) x\n" * 20_000,
    "ошибка " * 15_000,
    "ошибка" + "а" * 100_000,
    "Cubisio " * 12_000,
    "version " * 12_000,
    "v1." * 30_000,
    "1.1." * 25_000,
    "при " * 25_000,
    "at " * 30_000,
    "\tat x.y(" * 12_000,
    'File "' * 16_000,
    "сначала " * 12_000,
    "-> " * 30_000,
    "windows " * 12_000,
    "error " * 16_000,
    "Windows 10 " * 9_000,
    "когда я " * 12_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=[f"hostile_{n}" for n in range(len(HOSTILE))])
def test_linear_time_on_hostile_100k(text):
    started = time.perf_counter()
    find_checklist_facts(text, [])
    assert time.perf_counter() - started < 2.0  # a quadratic pattern would take minutes


@given(
    st.text(st.characters(exclude_categories=()), max_size=2_000),
    st.lists(st.sampled_from(list(ArtifactKind)), max_size=5),
)
def test_never_raises(text, kinds):
    facts = find_checklist_facts(text, kinds)
    assert set(missing_items(facts)) | facts.present == set(ChecklistItem)


def test_a_tickets_record_grows_message_by_message():
    first = merge_present("", find_checklist_facts("Cubisio 3.2.1 не открывает отчёт", []))
    assert first == "version"
    second = merge_present(first, find_checklist_facts("Windows 11, Chrome 120", []))
    assert second == "version,environment"
    assert ChecklistItem.VERSION not in missing_from(second)
    assert ChecklistItem.LOGS in missing_from(second)
    assert stored_facts(second).present == {ChecklistItem.VERSION, ChecklistItem.ENVIRONMENT}


def _texts_for_rule_check() -> list[str]:
    """Every text the suite keeps (fixtures, reply tables) and the shared corpus when present."""
    roots = [Path(__file__).parent / "fixtures", Path(__file__).parents[2] / "shared" / "corpus"]
    texts = []
    for root in roots:
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            if path.is_file() and path.stat().st_size < 2_000_000:
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    return texts


def test_guarded_rules_find_what_the_plain_alternation_finds():
    # The word-start guard is a speed-up only: on every text we have, each item's pattern
    # must find a match exactly where its plain alternation finds one.
    texts = _texts_for_rule_check()
    assert len(texts) > 100
    for item, pattern in checklist._TEXT_RULES:
        plain = re.compile(checklist.PLAIN_ALTERNATIONS[item], re.IGNORECASE | re.MULTILINE)
        for text in texts:
            sample = checklist._normalise(text)
            found, expected = pattern.search(sample), plain.search(sample)
            assert (found and found.start()) == (expected and expected.start()), (item, text[:80])
