"""Criticality on arrival (issue 15): one test per case of tests/fixtures/criticality.toml,
then the operator's config rules, the order of the table and the limits of the decision."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from parsers.criticality import (
    LEVELS,
    RULES_FILE,
    TEXT_WINDOW,
    CriticalityDecision,
    CriticalityRule,
    builtin_rules,
    decide_criticality,
)
from parsers.quotes import split_reply

TABLE = Path(__file__).parent / "fixtures" / "criticality.toml"
CASES = tomllib.loads(TABLE.read_text(encoding="utf-8"))["case"]
REASONS = {
    "phrase_critical",
    "phrase_high",
    "phrase_low",
    "subject_marker",
    "contract_default",
    "config_rule",
    "no_signal",
}


def new_text(case: dict) -> str:
    """What the pipeline passes: the text as written, or a reply with its quotes stripped."""
    if "body" in case:
        return split_reply(case["body"]).new_text
    return case["text"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_table_case(case):
    decision = decide_criticality(
        case["subject"], new_text(case), contract_default=case.get("contract_default")
    )
    assert (decision.level, decision.reason) == (case["level"], case["reason"]), (
        f"{case['note']} -- got {decision.explanation}"
    )
    assert decision.explanation.startswith(f"{case['level']}: ")
    if "quoted_level" in case:
        whole = decide_criticality(case["subject"], case["body"])
        assert whole.level == case["quoted_level"], "the quoted history should hold the trap"


def test_table_is_large_and_well_formed():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)) >= 60
    assert {case["level"] for case in CASES} == set(LEVELS)
    assert {case["reason"] for case in CASES} == REASONS - {"config_rule"}
    for case in CASES:
        assert case["note"].strip(), case["id"]
        assert ("text" in case) != ("body" in case), case["id"]
    russian = sum(any("а" <= char <= "я" for char in case["subject"].lower()) for case in CASES)
    assert russian >= 30
    assert len(CASES) - russian >= 20


def test_builtin_data_is_lowercase_and_named():
    data = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
    for level in ("critical", "high", "low"):
        names = [entry["name"] for entry in data[level]]
        assert len(names) == len(set(names)), level
        for entry in data[level]:
            for pattern in (*entry["patterns"], *entry.get("with", ())):
                assert pattern == pattern.lower(), pattern
                assert "ё" not in pattern, f"{pattern}: the text is folded to е"


# --- config rules ----------------------------------------------------------------------


def test_config_rule_wins_over_builtin_critical():
    rule = CriticalityRule("low", ("тестовый стенд",), "test_bench")
    decision = decide_criticality("Упал сервер на тестовом стенде", "", extra_rules=(rule,))
    assert decision == CriticalityDecision(
        "low", "config_rule", 'low: test_bench matched "тестовом стенде" in the subject'
    )


def test_config_rules_first_match_wins_with_level_as_written():
    rules = (
        CriticalityRule("high", ("отгрузка",), "shipping"),
        CriticalityRule("critical", ("склад",), "warehouse"),
    )
    decision = decide_criticality("Склад: отгрузки не проходят", "", extra_rules=rules)
    assert (decision.level, decision.reason) == ("high", "config_rule")
    assert decision.explanation == 'high: shipping matched "отгрузки" in the subject'


def test_config_rule_without_name_is_numbered():
    rules = (
        CriticalityRule("low", ("бухгалтерия",)),
        CriticalityRule("critical", ("линия розлива",)),
    )
    decision = decide_criticality("Отчет", "Стоит линия розлива №3", extra_rules=rules)
    assert decision.explanation == 'critical: config rule 2 matched "линия розлива" in the text'


@pytest.mark.parametrize(
    "text",
    [
        "Не работает линия розлива",
        "На линии розлива ошибка",
        "Остановили линию розлива",
        "Линией розлива управляет Cubisio",
        "линия-розлива",
        "ЛИНИЯ РОЗЛИВА",
    ],
)
def test_config_phrase_matches_inflected_russian(text):
    rule = CriticalityRule("critical", ("линия розлива",), "bottling")
    assert decide_criticality("", text, extra_rules=(rule,)).reason == "config_rule"


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("остановилось", "Оборудование остановилось"),
        ("остановилось", "Конвейер остановился"),
        ("label printer", "Our label printers are offline"),
        ("outage", "Second outages this week"),
        ("crash", "The scanner crashed"),
    ],
)
def test_config_phrase_matches_inflections(phrase, text):
    rule = CriticalityRule("high", (phrase,))
    assert decide_criticality("", text, extra_rules=(rule,)).reason == "config_rule"


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("линия розлива", "Линейка розлива"),
        ("склад", "Складывается сумма"),
        ("SAP", "Sapphire theme"),
        ("упал", "Упаковка"),
    ],
)
def test_config_phrase_does_not_match_other_words(phrase, text):
    rule = CriticalityRule("critical", (phrase,))
    assert decide_criticality("", text, extra_rules=(rule,)).reason != "config_rule"


def test_config_phrase_is_cancelled_by_negation():
    rule = CriticalityRule("critical", ("простой линии",), "line_idle")
    assert decide_criticality("", "Обошлись без простоя линии", extra_rules=(rule,)).reason == (
        "no_signal"
    )
    assert decide_criticality("", "У нас простой линии", extra_rules=(rule,)).reason == (
        "config_rule"
    )


def test_config_phrase_is_words_not_a_regex():
    rule = CriticalityRule("high", ("C++ (SDK) [v2",), "sdk")
    assert decide_criticality("Вопрос по C++ (SDK) [v2]", "", extra_rules=(rule,)).level == "high"
    # Only the words count: punctuation between them is free, as in the text.
    assert decide_criticality("Вопрос по C SDK v2", "", extra_rules=(rule,)).level == "high"
    assert decide_criticality("Вопрос по SDK v2", "", extra_rules=(rule,)).level == "low"


@pytest.mark.parametrize(
    ("level", "phrases"),
    [("urgent", ("x",)), ("Critical", ("x",)), ("high", ()), ("high", ("!!!",))],
)
def test_config_rule_is_validated(level, phrases):
    with pytest.raises(ValueError, match="criticality"):
        CriticalityRule(level, phrases)


def test_config_rule_can_lower_to_normal():
    rule = CriticalityRule("normal", ("демо-стенд",), "demo")
    decision = decide_criticality("Демо-стенд не запускается", "", extra_rules=(rule,))
    assert (decision.level, decision.reason) == ("normal", "config_rule")


# --- order, limits, contract -------------------------------------------------------------


def test_critical_phrase_beats_subject_marker_and_marker_beats_high():
    assert decide_criticality("[P1] Сервер упал", "").reason == "phrase_critical"
    decision = decide_criticality("Cubisio не запускается", "Priority: high")
    assert (decision.level, decision.reason) == ("high", "subject_marker")


def test_high_beats_low():
    decision = decide_criticality("Вопрос", "Подскажите, почему Cubisio не запускается?")
    assert (decision.level, decision.reason) == ("high", "phrase_high")


def test_only_the_first_4000_characters_of_the_text_are_read():
    padding = "Лог работы программы без замечаний. " * 200
    late = padding[: TEXT_WINDOW - 20] + " остановлено производство"
    assert len(late) > TEXT_WINDOW
    assert decide_criticality("Лог", late).level == "normal"
    early = padding[: TEXT_WINDOW - 40] + " остановлено производство"
    assert decide_criticality("Лог", early).level == "critical"


def test_unknown_contract_default_is_refused():
    with pytest.raises(ValueError, match="criticality"):
        decide_criticality("", "", contract_default="urgent")


def test_urgency_is_named_in_the_explanation_but_never_decides():
    alone = decide_criticality("СРОЧНО!!!", "ASAP")
    assert alone == CriticalityDecision(
        "normal", "no_signal", 'normal: no phrase decided ("срочно" alone does not raise the level)'
    )
    with_signal = decide_criticality("Срочно: упал сервер", "")
    assert with_signal.explanation == (
        'critical: "упал сервер" in the subject (also "срочно", which never decides alone)'
    )


def test_companion_must_be_near_and_not_negated():
    far = "Не работает печать.\n" + "Подробности в логе. " * 10 + "\nПароль у всех одинаковый."
    assert decide_criticality("", far).level == "normal"
    assert decide_criticality("", "Не работает печать не у всех, только в бухгалтерии").level == (
        "normal"
    )


def test_explanation_names_subject_or_text():
    assert decide_criticality("Авария", "").explanation == 'critical: "авария" in the subject'
    assert decide_criticality("", "Авария").explanation == 'critical: "авария" in the text'


def test_empty_input_is_normal():
    assert decide_criticality("", "") == CriticalityDecision(
        "normal", "no_signal", "normal: no phrase decided"
    )


def test_rules_are_loaded_once():
    assert builtin_rules() is builtin_rules()


def test_decision_is_fast_on_a_full_window():
    text = ("Добрый день. Прикладываю журнал работы программы за смену, всё штатно. " * 80)[
        :TEXT_WINDOW
    ]
    decide_criticality("Журнал", text)
    started = time.perf_counter()
    for _ in range(20):
        decide_criticality("Журнал", text)
    assert (time.perf_counter() - started) / 20 < 0.02
