"""Reply stripping (parsers/quotes.py): one realistic body per mail client and per trap.

Each case is the plain text a client produces, with the exact new text a support engineer
should see. The traps are the cases where stripping would lose the customer's words.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.quotes import ReplyParts, split_reply

CASES = [
    # --- Outlook ---------------------------------------------------------------------------
    ("outlook_en_original_message", "Done, the report opens now.\n\n-----Original Message-----\nFrom: SIS Support [mailto:info@sis.ru]\nSent: Monday, March 3, 2025 10:15 AM\nTo: Ivan Petrov\nSubject: RE: [SIS #1042] Report does not open\n\nPlease try again.", "Done, the report opens now."),
    ("outlook_ru_original_message", "Добрый день!\nОшибка повторилась, лог во вложении.\n\n-----Исходное сообщение-----\nОт: SIS Support [mailto:info@sis.ru]\nОтправлено: 3 марта 2025 г. 10:15\nКому: Иван Петров\nТема: RE: [SIS #1042] Не открывается отчёт\n\nПопробуйте ещё раз.", "Добрый день!\nОшибка повторилась, лог во вложении."),
    ("outlook_ru_underscores", "Спасибо, всё работает.\n\n________________________________\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Пётр Сидоров <petr@romashka.ru>\nТема: [SIS #1042] Не открывается отчёт\n\nЗдравствуйте! Обновите модуль.", "Спасибо, всё работает."),
    ("outlook_en_underscores_bold", "Still failing after the update.\n\n________________________________\n*From:* SIS Support <info@sis.ru>\n*Sent:* Monday, March 3, 2025 12:40 PM\n*To:* Ivan Petrov <ivan@example.com>\n*Subject:* [SIS #7] Sync error\n\nPlease update.", "Still failing after the update."),
    ("outlook_ru_header_block_no_separator", "Готово, закрывайте заявку.\n\nОт: SIS Support <info@sis.ru>\nДата: 3 марта 2025 г. 12:40\nКому: petr@romashka.ru\nТема: [SIS #1042] Не открывается отчёт\n\nстарое письмо", "Готово, закрывайте заявку."),
    ("outlook_en_header_block_split_from", "See the screenshot attached.\n\nFrom: Human Resources\n<a-really-long-automated-address@example.com>\nSent: Monday, August 26, 2019 4:37 PM\nTo: Ivan Petrov <ivan@example.com>\nSubject: A new message\n\nold text", "See the screenshot attached."),
    # --- Gmail -----------------------------------------------------------------------------
    ("gmail_en", "Thanks, that fixed it.\n\nOn Mon, Mar 3, 2025 at 10:15 AM Ivan Petrov <ivan@example.com> wrote:\n\n> The sync fails with error 0x80004005.\n> Log attached.", "Thanks, that fixed it."),
    ("gmail_en_wrapped_attribution", "It happens again on the second PC.\n\nOn Mon, Mar 3, 2025 at 10:15\u202fAM SIS Support Department <\nsupport@sis.ru> wrote:\n\n> Please reinstall the client.", "It happens again on the second PC."),
    ("gmail_ru", "Ок, жду.\n\nпн, 3 мар. 2025\u202fг. в 10:15, SIS Support <info@sis.ru>:\n\n> Здравствуйте!\n> Исправление будет в пятницу.", "Ок, жду."),
    ("gmail_ru_wrapped", "Не помогло.\n\nпн, 3 мар. 2025 г. в 10:15, Служба поддержки SIS Cubisio <\nsupport@sis.ru>:\n\n> Перезапустите службу.", "Не помогло."),
    ("gmail_ru_verb", "Проверил, работает.\n\n3 марта 2025 г., в 10:15, Иван <ivan@example.ru> написал(а):\n\n> Проверьте, пожалуйста.", "Проверил, работает."),
    ("gmail_ru_wrapped_before_time", "Лог прикладываю.\n\nпн, 3 мар. 2025 г.\nв 10:15, Иван Петров <ivan@example.ru>:\n\n> Пришлите лог.", "Лог прикладываю."),
    # --- Thunderbird -----------------------------------------------------------------------
    ("thunderbird_en", "Yes, version 4.2.\n\nOn 03.03.2025 10:15, Ivan Petrov wrote:\n> Which version do you run?", "Yes, version 4.2."),
    ("thunderbird_ru", "Да, версия 4.2.\n\n03.03.2025 10:15, Иван Петров пишет:\n> Какая у вас версия?", "Да, версия 4.2."),
    # --- Apple Mail ------------------------------------------------------------------------
    ("apple_en", "Works now, thank you!\n\n> On 3 Mar 2025, at 10:15, Ivan <ivan@example.com> wrote:\n>\n> Try again please.", "Works now, thank you!"),
    ("apple_en_unquoted_attribution", "Works now.\n\nOn 3 Mar 2025, at 10:15, Ivan <ivan@example.com> wrote:\n\nTry again please.", "Works now."),
    ("apple_en_three_line_attribution", "This is new email reply in thread from below.\n\nOn Nov 21, 2014,\nat 10:18,\nJohn Doe <john@example.com> wrote:\n\n> Ok. Thanks.", "This is new email reply in thread from below."),
    ("apple_ru", "Спасибо, всё открылось\n\n3 мар. 2025 г., в 10:15, SIS <info@sis.ru> написал(а):\n\n> Попробуйте ещё раз.", "Спасибо, всё открылось"),
    # --- Yandex and Mail.ru ----------------------------------------------------------------
    ("yandex_date_first", "Принято, спасибо.\n\n03.03.2025, 10:15, \"SIS Support\" <info@sis.ru>:\n> Заявка закрыта.", "Принято, спасибо."),
    ("yandex_time_first", "Ошибка снова появилась.\n\n10:15, 3 марта 2025 г., Иван <ivan@yandex.ru>:\n> Всё исправлено.", "Ошибка снова появилась."),
    ("mailru_named", "Понял, перезагружу сервер вечером.\n\nПонедельник, 3 марта 2025, 10:15 +03:00 от Иван Петров <ivan@mail.ru>:\n> Нужна перезагрузка.", "Понял, перезагружу сервер вечером."),
    ("mailru_address_only", "Прикладываю скриншот.\n\nСреда, 5 марта 2025, 12:00 +03:00 от support@sis.ru:\n\n> Пришлите скриншот ошибки.", "Прикладываю скриншот."),
    # --- '>' blocks and inline replies -----------------------------------------------------
    ("quote_block_without_attribution", "Вот ответ на ваш вопрос: версия 4.2.\n\n> Какая у вас версия?\n> И какая ОС?", "Вот ответ на ваш вопрос: версия 4.2."),
    ("inline_en", "On Dec 15, 2024, at 2:00 PM, Jane Doe <jane@example.com> wrote:\n> What's your opinion on option A?\n\nI think option A is great.\n\n> What about option B?\n\nOption B has some drawbacks.", "I think option A is great.\n\nOption B has some drawbacks."),
    ("inline_ru_with_greeting_and_signature", "Добрый день!\n\n03.03.2025 10:15, SIS Support пишет:\n> 1. Какая версия клиента?\n4.2.1\n> 2. Какая ОС?\nWindows 10\n\n-- \nИван Петров\nООО «Ромашка»", "Добрый день!\n\n4.2.1\nWindows 10"),
    ("inline_dense", "> q1\na1\n> q2\na2", "a1\na2"),
    ("bottom_post", "On 03.03.2025 10:15, SIS Support wrote:\n> Does it still fail?\n\nYes, every morning at 9:00.", "Yes, every morning at 9:00."),
    ("old_style_name_wrote", "Marc Slemko wrote:\n> If you have a real uid of root, that is not good.\n\nIsn't that the case for almost every other server?", "Isn't that the case for almost every other server?"),
    # --- nothing to strip, or nothing but a quote ------------------------------------------
    ("no_quote", "Здравствуйте!\nНе открывается отчёт по складу, ошибка 0x80004005.\n\nВерсия 4.2.", "Здравствуйте!\nНе открывается отчёт по складу, ошибка 0x80004005.\n\nВерсия 4.2."),
    ("only_quote", "> старое письмо\n> целиком", "> старое письмо\n> целиком"),
    ("only_outlook_quote", "-----Original Message-----\nFrom: Ivan\nSent: Monday\nTo: SIS\nSubject: Error\n\nThe report fails.", "-----Original Message-----\nFrom: Ivan\nSent: Monday\nTo: SIS\nSubject: Error\n\nThe report fails."),
    ("forward_with_comment", "Пересылаю письмо бухгалтера.\n\n---------- Forwarded message ---------\nFrom: Анна <anna@romashka.ru>\nDate: пн, 3 мар. 2025 г. в 09:00\nSubject: Отчёт\nTo: Иван <ivan@romashka.ru>\n\nОтчёт пустой.", "Пересылаю письмо бухгалтера."),
    # --- signatures ------------------------------------------------------------------------
    ("signature_dash_space", "Текст заявки.\n-- \nИван Петров\n+7 900 123-45-67", "Текст заявки."),
    ("signature_bare_dashes", "Please check the server.\n\n--\nIvan Petrov\nACME Ltd.", "Please check the server."),
    ("sign_off_ru_block_and_quote", "Проблема решена.\n\nС уважением,\nИван Петров\nведущий инженер\nООО «Ромашка»\nтел. +7 (495) 123-45-67\n\n________________________________\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Иван Петров\nТема: [SIS #1042]\n\nстарое", "Проблема решена."),
    ("sign_off_ru_same_line", "Прошу проверить лицензию.\n\nС уважением, Иван Петров", "Прошу проверить лицензию."),
    ("sign_off_en", "The backup job failed again last night.\n\nBest regards,\nIvan Petrov\nACME Ltd.", "The backup job failed again last night."),
    ("thanks_block_is_signature", "Приложил лог.\n\nСпасибо!\nИван", "Приложил лог."),
    ("thanks_in_prose_is_content", "Спасибо, но ошибка осталась.\nThanks, but it still fails.", "Спасибо, но ошибка осталась.\nThanks, but it still fails."),
    ("thanks_before_question_is_content", "Обновил клиент.\n\nСпасибо!\nКогда будет исправление для сервера?", "Обновил клиент.\n\nСпасибо!\nКогда будет исправление для сервера?"),
    ("thanks_alone_at_end_is_content", "Please look at ticket 7.\n\nThanks", "Please look at ticket 7.\n\nThanks"),
    ("postscript_after_sign_off_is_content", "Отчёт не открывается.\n\nС уважением,\nИван\n\nP.S. Склад тоже не открывается.", "Отчёт не открывается.\n\nС уважением,\nИван\n\nP.S. Склад тоже не открывается."),
    ("iphone_footer_en", "Can you call me back?\n\nSent from my iPhone\n\nOn 3 Mar 2025, at 10:15, SIS <info@sis.ru> wrote:\n\n> Ticket closed.", "Can you call me back?"),
    ("iphone_footer_ru", "Перезвоните, пожалуйста.\n\nОтправлено с iPhone", "Перезвоните, пожалуйста."),
    ("mailru_mobile_footer", "Ошибка на кассе 3.\n\n--\nОтправлено из мобильной Почты Mail.ru", "Ошибка на кассе 3."),
    ("yandex_mobile_footer", "Принтер снова не печатает.\n\nОтправлено из Яндекс.Почты для мобильных", "Принтер снова не печатает."),
    ("yandex_app_footer", "Заявку можно закрывать.\n\nОтправлено из приложения Яндекс Почта", "Заявку можно закрывать."),
    ("outlook_ios_footer", "Please call me at +7 900 123-45-67.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Please call me at +7 900 123-45-67."),
    ("signature_only", "-- \nИван Петров\nООО «Ромашка»", "--\nИван Петров\nООО «Ромашка»"),
    ("begins_with_sign_off", "Спасибо,\nИван\n\n03.03.2025 10:15, SIS Support пишет:\n> Заявка закрыта.", "Спасибо,\nИван"),
    # --- prose that looks like a marker ----------------------------------------------------
    ("prose_from", "From: the log I see a timeout.\nPlease check.", "From: the log I see a timeout.\nPlease check."),
    ("prose_from_ru", "От: кого пришло письмо, не знаю.\nНо в нём вирус.", "От: кого пришло письмо, не знаю.\nНо в нём вирус."),
    ("prose_above_attribution_not_swallowed", "I will try to fix it as soon as I\nget back to a computer.\nOn Dec 8, 2013 2:10 PM, \"John Sullivan\" <notifications@github.com> wrote:\n\n> Your code shortens the sequence.", "I will try to fix it as soon as I\nget back to a computer."),
    ("sent_from_my_desk_is_content", "Here is another email\n\nSent from my desk, is much easier than my mobile phone.", "Here is another email\n\nSent from my desk, is much easier than my mobile phone."),
    ("prose_wrote", "My colleague wrote:\nthe service does not start after 10 minutes.", "My colleague wrote:\nthe service does not start after 10 minutes."),
    ("grep_output_with_dashes", "grep shows:\nerror 1\n--\nerror 2\n--\nerror 3\n\nWhat does it mean?", "grep shows:\nerror 1\n--\nerror 2\n--\nerror 3\n\nWhat does it mean?"),
    ("rule_line_as_divider", "Шаги:\n1. Открыть отчёт\n____________________\n2. Нажать «Печать»", "Шаги:\n1. Открыть отчёт\n____________________\n2. Нажать «Печать»"),
    # --- degenerate input ------------------------------------------------------------------
    ("empty", "", ""),
    ("whitespace_only", "  \n\t\n", ""),
    ("outer_blank_lines_and_trailing_spaces", "\n\n  Отступ оставляем.   \nХвост убираем.\t\n\n\n", "  Отступ оставляем.\nХвост убираем."),
    ("cr_leftovers", "Ответ на заявку.\r\n\r\n03.03.2025 10:15, SIS Support пишет:\r> старое\r\n", "Ответ на заявку."),
]  # fmt: skip


@pytest.mark.parametrize(("body", "new_text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_new_text(body, new_text):
    assert split_reply(body).new_text == new_text


def test_case_ids_are_unique():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(
    ("body", "parts"),
    [
        pytest.param(
            "Ок.\n\nС уважением,\nИван\n\n03.03.2025 10:15, SIS пишет:\n> старое",
            ReplyParts("Ок.", "03.03.2025 10:15, SIS пишет:\n> старое", "С уважением,\nИван"),
            id="all_three_parts",
        ),
        pytest.param(
            "> q1\na1\n> q2\na2",
            ReplyParts("a1\na2", "> q1\n\n> q2", ""),
            id="inline_blocks_kept_apart",
        ),
        pytest.param(
            "> только цитата",
            ReplyParts("> только цитата", "", ""),
            id="fallback_keeps_parts_disjoint",
        ),
        pytest.param(
            "-- \nИван\n\nOn 03.03.2025 10:15, SIS wrote:\n> old",
            ReplyParts("--\nИван", "On 03.03.2025 10:15, SIS wrote:\n> old", ""),
            id="fallback_to_text_above_quote",
        ),
    ],
)
def test_parts(body, parts):
    assert split_reply(body) == parts


def test_long_body_finishes():
    """100 KB+ of lines that each nearly match a marker: one pass, no regex blow-up."""
    near_misses = [
        "On Monday the 3rd at 10:15 the server",
        "пн, 3 мар. 2025 г. в 10:15, Иван <ivan@example.ru> без двоеточия",
        "From: prose line " + "x" * 200,
        "> quoted",
        "own text between quotes",
        "1:11 " * 60 + "a@b.c:",
        "-" * 5000,
        "\t" * 5000 + ":",
    ]
    body = "\n".join(near_misses * 2000) + "\n" + "a" * 200_000 + "@" * 5000 + ":"
    assert len(body) > 1_000_000
    parts = split_reply(body)
    assert parts.new_text.startswith("On Monday the 3rd at 10:15 the server")


@settings(max_examples=300, database=None)  # keep .hypothesis/ out of the tree
@given(
    st.lists(
        st.sampled_from(
            [
                "",
                "text",
                "> q",
                "--",
                "-- ",
                "Спасибо,",
                "С уважением,",
                "Sent from my iPhone",
                "From: Ivan",
                "Sent: Monday",
                "On 03.03.2025 10:15, Ivan wrote:",
                "03.03.2025, 10:15, Ivan <ivan@x.ru>:",
                "-----Original Message-----",
                "_" * 32,
                "\r",
            ]
        )
        | st.text(max_size=40),
        max_size=40,
    ).map("\n".join)
)
def test_never_raises_never_loses_words(text):
    parts = split_reply(text)
    if text.strip():
        assert parts.new_text.strip()
    source = text.replace("\r", "\n")
    assert all(line in source for line in parts.new_text.split("\n"))
