"""Reply stripping (parsers/quotes.py): one realistic body per mail client and per trap.

Each case is the plain text a client produces, with the exact new text a support engineer
should see. The traps are the cases where stripping would lose the customer's words.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.html_text import html_to_text
from parsers.quotes import ReplyParts, shared_passage, split_reply

CASES = [
    # --- Outlook ---------------------------------------------------------------------------
    ("outlook_en_original_message", "Done, the report opens now.\n\n-----Original Message-----\nFrom: SIS Support [mailto:info@sis.ru]\nSent: Monday, March 3, 2025 10:15 AM\nTo: Ivan Petrov\nSubject: RE: [SIS #1042] Report does not open\n\nPlease try again.", "Done, the report opens now."),
    ("outlook_ru_original_message", "Добрый день!\nОшибка повторилась, лог во вложении.\n\n-----Исходное сообщение-----\nОт: SIS Support [mailto:info@sis.ru]\nОтправлено: 3 марта 2025 г. 10:15\nКому: Иван Петров\nТема: RE: [SIS #1042] Не открывается отчёт\n\nПопробуйте ещё раз.", "Добрый день!\nОшибка повторилась, лог во вложении."),
    ("outlook_ru_underscores", "Спасибо, всё работает.\n\n________________________________\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Пётр Сидоров <petr@romashka.ru>\nТема: [SIS #1042] Не открывается отчёт\n\nЗдравствуйте! Обновите модуль.", "Спасибо, всё работает."),
    ("outlook_en_underscores_bold", "Still failing after the update.\n\n________________________________\n*From:* SIS Support <info@sis.ru>\n*Sent:* Monday, March 3, 2025 12:40 PM\n*To:* Ivan Petrov <ivan@example.com>\n*Subject:* [SIS #7] Sync error\n\nPlease update.", "Still failing after the update."),
    ("outlook_ru_header_block_no_separator", "Готово, закрывайте заявку.\n\nОт: SIS Support <info@sis.ru>\nДата: 3 марта 2025 г. 12:40\nКому: petr@romashka.ru\nТема: [SIS #1042] Не открывается отчёт\n\nстарое письмо", "Готово, закрывайте заявку."),
    ("outlook_en_header_block_split_from", "See the screenshot attached.\n\nFrom: Human Resources\n<a-really-long-automated-address@example.com>\nSent: Monday, August 26, 2019 4:37 PM\nTo: Ivan Petrov <ivan@example.com>\nSubject: A new message\n\nold text", "See the screenshot attached."),
    ("outlook_ru_ot_otpravleno", "Добрый день!\nОтчёт открылся.\n\nОт: Иван Петров <ivan@example.com>\nОтправлено: 3 марта 2025 г. 10:00\nКому: SIS Support <info@sis.ru>\nТема: RE: [SIS #1042] Не открывается отчёт\n\nПопробуйте ещё раз.", "Добрый день!\nОтчёт открылся."),
    ("outlook_ru_mailto_and_cc", "Отчёт открылся.\n\nОт: Иван Петров [mailto:ivan@example.com] \nОтправлено: Monday, March 3, 2025 10:00 AM\nКому: SIS Support\nКопия: Анна\nТема: RE: отчёт\n\nстарое", "Отчёт открылся."),
    ("outlook_ru_data_weekday", "Готово.\n\nОт: Иван Петров <ivan@example.com>\nДата: понедельник, 3 марта 2025 г., 10:00\nКому: SIS Support <info@sis.ru>\nТема: RE: отчёт\n\nстарое", "Готово."),
    ("outlook_en_new_style", "Fixed, thanks.\n\nFrom: Ivan Petrov <ivan@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: SIS Support <info@sis.ru>\nSubject: RE: [SIS #7] Sync error\n\nold", "Fixed, thanks."),
    ("outlook_mac_date", "Fixed.\n\nFrom: Ivan Petrov <ivan@example.com>\nDate: Monday, 3 March 2025 at 10:00\nTo: SIS Support <info@sis.ru>\nSubject: Re: Sync error\n\nold", "Fixed."),
    ("outlook_en_underscores", "Fixed.\n\n________________________________\nFrom: Ivan Petrov <ivan@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: SIS Support <info@sis.ru>\nSubject: Sync error\n\nold", "Fixed."),
    ("outlook_underscores_blank_line", "Fixed.\n\n________________________________\n\nFrom: Ivan Petrov <ivan@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: SIS Support <info@sis.ru>\nSubject: Sync error\n\nold", "Fixed."),
    ("outlook_ru_sign_off_then_header_block", "Проблема решена.\n\nС уважением,\nИван Петров\nведущий инженер\nтел. +7 (495) 123-45-67\n\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Иван Петров\nТема: [SIS #1042]\n\nстарое", "Проблема решена.\n\nС уважением,\nИван Петров"),
    ("outlook_android_footer_then_quote", "Call me.\n\nGet Outlook for Android<https://aka.ms/AAb9ysg>\n________________________________\nFrom: SIS Support <info@sis.ru>\nSent: Monday, March 3, 2025 10:00:00 AM\nTo: Ivan Petrov <ivan@example.com>\nSubject: Re: ticket\n\nold", "Call me."),
    # --- Gmail -----------------------------------------------------------------------------
    ("gmail_en", "Thanks, that fixed it.\n\nOn Mon, Mar 3, 2025 at 10:15 AM Ivan Petrov <ivan@example.com> wrote:\n\n> The sync fails with error 0x80004005.\n> Log attached.", "Thanks, that fixed it."),
    ("gmail_en_wrapped_attribution", "It happens again on the second PC.\n\nOn Mon, Mar 3, 2025 at 10:15\u202fAM SIS Support Department <\nsupport@sis.ru> wrote:\n\n> Please reinstall the client.", "It happens again on the second PC."),
    ("gmail_ru", "Ок, жду.\n\nпн, 3 мар. 2025\u202fг. в 10:15, SIS Support <info@sis.ru>:\n\n> Здравствуйте!\n> Исправление будет в пятницу.", "Ок, жду."),
    ("gmail_ru_wrapped", "Не помогло.\n\nпн, 3 мар. 2025 г. в 10:15, Служба поддержки SIS Cubisio <\nsupport@sis.ru>:\n\n> Перезапустите службу.", "Не помогло."),
    ("gmail_ru_verb", "Проверил, работает.\n\n3 марта 2025 г., в 10:15, Иван <ivan@example.ru> написал(а):\n\n> Проверьте, пожалуйста.", "Проверил, работает."),
    ("gmail_ru_wrapped_before_time", "Лог прикладываю.\n\nпн, 3 мар. 2025 г.\nв 10:15, Иван Петров <ivan@example.ru>:\n\n> Пришлите лог.", "Лог прикладываю."),
    ("gmail_ru_trailing_gt", "Спасибо, работает.\n\nпн, 3 мар. 2025 г. в 10:00, Иван Петров <ivan@example.com>:\n\n> Попробуйте ещё раз.\n>", "Спасибо, работает."),
    ("gmail_ru_wrapped_name", "Не работает.\n\nпн, 3 мар. 2025 г. в 10:00, Служба технической поддержки\nООО Ромашка <support@romashka.ru>:\n\n> Попробуйте.", "Не работает."),
    ("gmail_en_wrapped_before_wrote", "Works.\n\nOn Mon, Mar 3, 2025 at 10:00 AM Ivan Petrov <ivan.petrov@example.com>\nwrote:\n\n> Try again.", "Works."),
    ("gmail_en_wrapped_name", "Works.\n\nOn Mon, Mar 3, 2025 at 10:00 AM Technical Support Department of ACME\nCorporation <support@example.com> wrote:\n\n> Try again.", "Works."),
    # --- Thunderbird -----------------------------------------------------------------------
    ("thunderbird_en", "Yes, version 4.2.\n\nOn 03.03.2025 10:15, Ivan Petrov wrote:\n> Which version do you run?", "Yes, version 4.2."),
    ("thunderbird_ru", "Да, версия 4.2.\n\n03.03.2025 10:15, Иван Петров пишет:\n> Какая у вас версия?", "Да, версия 4.2."),
    ("thunderbird_en_us_date", "Version 4.2.\n\nOn 3/3/25 10:00, Ivan Petrov wrote:\n> Which version?", "Version 4.2."),
    ("thunderbird_en_own_signature_below_quote", "Version 4.2.\n\nOn 3/3/25 10:00, Ivan Petrov wrote:\n>\n> Which version?\n>\n\n-- \nPetr Sidorov", "Version 4.2."),
    ("thunderbird_ru_quoted_signature", "Версия 4.2.\n\n03.03.2025 10:00, Иван Петров пишет:\n> Какая версия?\n>\n> -- \n> SIS Support", "Версия 4.2."),
    # --- Apple Mail ------------------------------------------------------------------------
    ("apple_en", "Works now, thank you!\n\n> On 3 Mar 2025, at 10:15, Ivan <ivan@example.com> wrote:\n>\n> Try again please.", "Works now, thank you!"),
    ("apple_en_unquoted_attribution", "Works now.\n\nOn 3 Mar 2025, at 10:15, Ivan <ivan@example.com> wrote:\n\nTry again please.", "Works now."),
    ("apple_en_three_line_attribution", "This is new email reply in thread from below.\n\nOn Nov 21, 2014,\nat 10:18,\nJohn Doe <john@example.com> wrote:\n\n> Ok. Thanks.", "This is new email reply in thread from below."),
    ("apple_ru", "Спасибо, всё открылось\n\n3 мар. 2025 г., в 10:15, SIS <info@sis.ru> написал(а):\n\n> Попробуйте ещё раз.", "Спасибо, всё открылось"),
    ("apple_ru_quoted_attribution", "Спасибо\n\n> 3 марта 2025 г., в 10:00, Иван Петров <ivan@example.com> написал(а):\n> \n> Попробуйте.", "Спасибо"),
    ("apple_ru_iphone_footer", "Спасибо\n\nОтправлено с iPhone\n\n> 3 марта 2025 г., в 10:00, Иван Петров <ivan@example.com> написал(а):\n> \n> Попробуйте.", "Спасибо"),
    ("apple_en_iphone_footer", "Спасибо\n\nSent from my iPhone\n\n> On 3 Mar 2025, at 10:00, SIS <info@sis.ru> wrote:\n> old", "Спасибо"),
    # --- Yandex and Mail.ru ----------------------------------------------------------------
    ("yandex_date_first", "Принято, спасибо.\n\n03.03.2025, 10:15, \"SIS Support\" <info@sis.ru>:\n> Заявка закрыта.", "Принято, спасибо."),
    ("yandex_time_first", "Ошибка снова появилась.\n\n10:15, 3 марта 2025 г., Иван <ivan@yandex.ru>:\n> Всё исправлено.", "Ошибка снова появилась."),
    ("mailru_named", "Понял, перезагружу сервер вечером.\n\nПонедельник, 3 марта 2025, 10:15 +03:00 от Иван Петров <ivan@mail.ru>:\n> Нужна перезагрузка.", "Понял, перезагружу сервер вечером."),
    ("mailru_address_only", "Прикладываю скриншот.\n\nСреда, 5 марта 2025, 12:00 +03:00 от support@sis.ru:\n\n> Пришлите скриншот ошибки.", "Прикладываю скриншот."),
    ("yandex_signature_above_attribution", "Принято.\n\n-- \nИван Петров\n\n03.03.2025, 10:00, \"Иван Петров\" <ivan@yandex.ru>:\n> Заявка закрыта.", "Принято."),
    ("yandex_address_only", "Принято.\n\n03.03.2025, 10:00, ivan@yandex.ru:\n> Заявка закрыта.", "Принято."),
    ("mailru_gt_without_space", "Понял.\n\nПонедельник, 3 марта 2025, 10:00 +03:00 от Иван Петров <ivan@mail.ru>:\n>\n>Нужна перезагрузка.\n>", "Понял."),
    ("mailru_quoted_attribution", "Понял.\n\n>Понедельник, 3 марта 2025, 10:00 +03:00 от Иван Петров <ivan@mail.ru>:\n>\n>Нужна перезагрузка.", "Понял."),
    ("mailru_old_original_message", "Понял.\n\n--- Исходное сообщение ---\nОт кого: Иван Петров <ivan@mail.ru>\nКому: SIS <info@sis.ru>\nДата: Понедельник, 3 марта 2025, 10:00 +03:00\nТема: отчёт\n\nстарое", "Понял."),
    ("mailru_forward_with_comment", "Посмотрите, пожалуйста.\n\n-------- Пересылаемое сообщение --------\nОт кого: Иван Петров <ivan@mail.ru>\nКому: SIS <info@sis.ru>\nДата: Понедельник, 3 марта 2025, 10:00 +03:00\nТема: отчёт\n\nстарое", "Посмотрите, пожалуйста."),
    ("mailru_forward_bare_keeps_all", "-------- Пересылаемое сообщение --------\nОт кого: Иван Петров <ivan@mail.ru>\nКому: SIS <info@sis.ru>\nДата: Понедельник, 3 марта 2025, 10:00 +03:00\nТема: отчёт\n\nстарое", "-------- Пересылаемое сообщение --------\nОт кого: Иван Петров <ivan@mail.ru>\nКому: SIS <info@sis.ru>\nДата: Понедельник, 3 марта 2025, 10:00 +03:00\nТема: отчёт\n\nстарое"),
    ("yandex_forward_with_comment", "Посмотрите.\n\n-------- Пересылаемое сообщение --------\n03.03.2025, 10:00, \"Иван Петров\" <ivan@yandex.ru>:\n\nстарое\n\n-------- Конец пересылаемого сообщения --------", "Посмотрите."),
    # --- The Bat! ---------------------------------------------------------------------------
    ("thebat_ru_bottom_post", "Здравствуйте, Иван.\n\nВы писали 3 марта 2025 г., 10:00:01:\n\n> Какая у вас версия?\n\nВерсия 4.2.\n\n-- \nС уважением,\n Пётр                          mailto:petr@romashka.ru", "Здравствуйте, Иван.\n\nВерсия 4.2."),
    ("thebat_ru_top_post", "Здравствуйте, Иван.\n\nВерсия 4.2.\n\nВы писали 3 марта 2025 г., 10:00:01:\n\n> Какая у вас версия?\n\n-- \nС уважением,\n Пётр                          mailto:petr@romashka.ru", "Здравствуйте, Иван.\n\nВерсия 4.2."),
    ("thebat_ru_inline_initials", "Здравствуйте, Иван.\n\nВы писали 3 марта 2025 г., 10:00:01:\n\nИП> Какая у вас версия?\n\nВерсия 4.2.\n\nИП> Какая ОС?\n\nWindows 10.\n\n-- \nС уважением,\n Пётр                          mailto:petr@romashka.ru", "Здравствуйте, Иван.\n\nВерсия 4.2.\n\nWindows 10."),
    ("thebat_ru_named_prefix", "Здравствуйте, Виталий.\n\nПрайсы во вложении.\n\n-- \nС уважением ,\nЛомакин Александр\n\nВы писали 10 ноября 2010 г., 16:22:13:\nАрхаров Виталий М.> Здравствуйте.\nАрхаров Виталий М.> Пришлите прайсы.", "Здравствуйте, Виталий.\n\nПрайсы во вложении."),
    ("thebat_ru_quote_without_gt", "Здравствуйте.\nПлинтуса нет.\n\nВы писали 12 сентября 2025 г., 17:09:03:\n\nДобрый день. Планируем закупку.", "Здравствуйте.\nПлинтуса нет."),
    ("thebat_en", "Hello Ivan,\n\nMonday, March 3, 2025, 10:00:01 AM, you wrote:\n\nIP> Which version?\n\n4.2\n\n-- \nBest regards,\n Petr                            mailto:petr@romashka.ru", "Hello Ivan,\n\n4.2"),
    # --- '>' blocks and inline replies -----------------------------------------------------
    ("quote_block_without_attribution", "Вот ответ на ваш вопрос: версия 4.2.\n\n> Какая у вас версия?\n> И какая ОС?", "Вот ответ на ваш вопрос: версия 4.2."),
    ("inline_en", "On Dec 15, 2024, at 2:00 PM, Jane Doe <jane@example.com> wrote:\n> What's your opinion on option A?\n\nI think option A is great.\n\n> What about option B?\n\nOption B has some drawbacks.", "I think option A is great.\n\nOption B has some drawbacks."),
    ("inline_ru_with_greeting_and_signature", "Добрый день!\n\n03.03.2025 10:15, SIS Support пишет:\n> 1. Какая версия клиента?\n4.2.1\n> 2. Какая ОС?\nWindows 10\n\n-- \nИван Петров\nООО «Ромашка»", "Добрый день!\n\n4.2.1\nWindows 10"),
    ("inline_dense", "> q1\na1\n> q2\na2", "a1\na2"),
    ("bottom_post", "On 03.03.2025 10:15, SIS Support wrote:\n> Does it still fail?\n\nYes, every morning at 9:00.", "Yes, every morning at 9:00."),
    ("old_style_name_wrote", "Marc Slemko wrote:\n> If you have a real uid of root, that is not good.\n\nIsn't that the case for almost every other server?", "Isn't that the case for almost every other server?"),
    ("top_post_nested_history", "Добрый день!\n\nОшибка повторилась сегодня утром.\nЛог во вложении.\n\nС уважением,\nИван\n\n03.03.2025 10:00, SIS Support пишет:\n> Добрый день!\n> Проверьте ещё раз.\n>\n> 02.03.2025 09:00, Иван пишет:\n>> Ошибка 0x80004005.", "Добрый день!\n\nОшибка повторилась сегодня утром.\nЛог во вложении.\n\nС уважением,\nИван"),
    ("inline_trailing_quote_dropped", "03.03.2025 10:00, SIS Support пишет:\n> 1. Версия?\n\n4.2\n\n> 2. ОС?\n\nWindows 10\n\n> Спасибо!\n> -- \n> SIS Support", "4.2\n\nWindows 10"),
    ("inline_gmail_en", "On Mon, Mar 3, 2025 at 10:00 AM Ivan Petrov <ivan@example.com> wrote:\n\n> Which version?\n>\n\n4.2\n\n> Which OS?\n>\n\nWindows 10\n\n> Thanks,\n> Ivan\n>", "4.2\n\nWindows 10"),
    ("inline_greeting_above_and_thanks_below", "Добрый день.\nОтветы ниже.\n\nпн, 3 мар. 2025 г. в 10:00, Иван Петров <ivan@example.com>:\n\n> Какая версия?\n\n4.2\n\n> Какая ОС?\n\nWindows 10\n\nСпасибо,\nПётр", "Добрый день.\nОтветы ниже.\n\n4.2\n\nWindows 10\n\nСпасибо,\nПётр"),
    # --- nothing to strip, or nothing but a quote ------------------------------------------
    ("no_quote", "Здравствуйте!\nНе открывается отчёт по складу, ошибка 0x80004005.\n\nВерсия 4.2.", "Здравствуйте!\nНе открывается отчёт по складу, ошибка 0x80004005.\n\nВерсия 4.2."),
    ("only_quote", "> старое письмо\n> целиком", "> старое письмо\n> целиком"),
    ("only_outlook_quote", "-----Original Message-----\nFrom: Ivan\nSent: Monday\nTo: SIS\nSubject: Error\n\nThe report fails.", "-----Original Message-----\nFrom: Ivan\nSent: Monday\nTo: SIS\nSubject: Error\n\nThe report fails."),
    ("forward_with_comment", "Пересылаю письмо бухгалтера.\n\n---------- Forwarded message ---------\nFrom: Анна <anna@romashka.ru>\nDate: пн, 3 мар. 2025 г. в 09:00\nSubject: Отчёт\nTo: Иван <ivan@romashka.ru>\n\nОтчёт пустой.", "Пересылаю письмо бухгалтера."),
    # All quote: the body is kept, since an empty new text would leave the ticket blank.
    ("only_quote_with_attribution", "пн, 3 мар. 2025 г. в 10:00, Иван Петров <ivan@example.com>:\n\n> Попробуйте.", "пн, 3 мар. 2025 г. в 10:00, Иван Петров <ivan@example.com>:\n\n> Попробуйте."),
    # --- signatures: "-- " blocks and footers go; a sign-off and the name under it are the
    # sender's words and stay (issue 14), the title, company and phones below them go ----
    ("signature_dash_space", "Текст заявки.\n-- \nИван Петров\n+7 900 123-45-67", "Текст заявки."),
    ("signature_bare_dashes", "Please check the server.\n\n--\nIvan Petrov\nACME Ltd.", "Please check the server."),
    ("sign_off_ru_block_and_quote", "Проблема решена.\n\nС уважением,\nИван Петров\nведущий инженер\nООО «Ромашка»\nтел. +7 (495) 123-45-67\n\n________________________________\nОт: SIS Support <info@sis.ru>\nОтправлено: 3 марта 2025 г. 12:40\nКому: Иван Петров\nТема: [SIS #1042]\n\nстарое", "Проблема решена.\n\nС уважением,\nИван Петров"),
    ("sign_off_ru_same_line", "Прошу проверить лицензию.\n\nС уважением, Иван Петров", "Прошу проверить лицензию.\n\nС уважением, Иван Петров"),
    ("sign_off_en", "The backup job failed again last night.\n\nBest regards,\nIvan Petrov\nACME Ltd.", "The backup job failed again last night.\n\nBest regards,\nIvan Petrov"),
    ("thanks_and_name_are_the_message", "Приложил лог.\n\nСпасибо!\nИван", "Приложил лог.\n\nСпасибо!\nИван"),
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
    ("signature_bare_dashes_ru", "Текст.\n\n--\nИван Петров\nООО «Ромашка»", "Текст."),
    ("sign_off_ru_block_contacts", "Не открывается отчёт.\n\nС уважением,\nИван Петров\nВедущий бухгалтер ООО «Ромашка»\nтел.: +7 (495) 123-45-67, доб. 123\nmob.: +7 900 123-45-67\nivan@romashka.ru\nwww.romashka.ru", "Не открывается отчёт.\n\nС уважением,\nИван Петров"),
    ("sign_off_ru_same_line_dot", "Не открывается отчёт.\nС уважением, Иван Петров.", "Не открывается отчёт.\nС уважением, Иван Петров."),
    ("sign_off_ru_same_line_company", "Не открывается отчёт.\n\nС уважением, Иван Петров, ООО «Ромашка»", "Не открывается отчёт.\n\nС уважением, Иван Петров, ООО «Ромашка»"),
    ("sign_off_ukr", "Звіт не відкривається.\n\nЗ повагою,\nОлег", "Звіт не відкривається.\n\nЗ повагою,\nОлег"),
    ("sign_off_en_contacts", "Report fails.\n\nBest regards,\nIvan Petrov\nACME Ltd.\n+7 495 123-45-67", "Report fails.\n\nBest regards,\nIvan Petrov"),
    ("sign_off_en_same_line", "Report fails.\n\nBest regards, Ivan", "Report fails.\n\nBest regards, Ivan"),
    ("thanks_comma_name", "Лог приложил.\n\nСпасибо,\nИван", "Лог приложил.\n\nСпасибо,\nИван"),
    ("thanks_comma_name_phone", "Лог приложил.\n\nСпасибо,\nИван Петров\n+7 900 123-45-67", "Лог приложил.\n\nСпасибо,\nИван Петров"),
    ("thanks_en_name", "Log attached.\n\nThanks,\nIvan", "Log attached.\n\nThanks,\nIvan"),
    ("thanks_then_sign_off", "Спасибо!\n\nС уважением,\nИван", "Спасибо!\n\nС уважением,\nИван"),
    ("thanks_then_footer", "Спасибо\n\nОтправлено с iPhone", "Спасибо"),
    ("sign_off_then_footer", "Перезвоните.\n\nС уважением,\nИван\n\nОтправлено с iPhone", "Перезвоните.\n\nС уважением,\nИван"),
    ("iphone_footer_ru_moego", "Перезвоните.\n\nОтправлено с моего iPhone", "Перезвоните."),
    ("iphone_footer_en_alone", "Call me.\n\nSent from my iPhone", "Call me."),
    ("mailru_mobile_footer_no_dashes", "Ошибка.\n\nОтправлено из мобильной Почты Mail.ru", "Ошибка."),
    ("yandex_mobile_footer_no_dot", "Ошибка.\n\nОтправлено из Яндекс Почты для мобильных", "Ошибка."),
    ("yandex_mobile_footer_after_delimiter", "Ошибка.\n\n-- \nОтправлено из Яндекс Почты для мобильных", "Ошибка."),
    ("outlook_android_footer", "Call me.\n\nGet Outlook for Android", "Call me."),
    ("outlook_android_footer_spaced_link", "Call me.\n\nGet Outlook for Android <https://aka.ms/ghei36>", "Call me."),
    ("outlook_android_footer_ru", "Перезвоните.\n\nПолучить Outlook для Android", "Перезвоните."),
    ("windows_mail_footer_en", "Call me.\n\nSent from Mail for Windows 10", "Call me."),
    ("windows_mail_footer_ru", "Перезвоните.\n\nОтправлено из приложения Почта для Windows 10", "Перезвоните."),
    ("samsung_footer_ru", "Перезвоните.\n\n\nОтправлено с устройства Galaxy на базе Android", "Перезвоните."),
    ("begins_with_thanks_then_content", "Спасибо за быстрый ответ!\nНо ошибка осталась: отчёт пустой.", "Спасибо за быстрый ответ!\nНо ошибка осталась: отчёт пустой."),
    ("begins_with_sign_off_then_content", "С уважением,\nбухгалтерия ООО «Ромашка»\n\nПрошу восстановить доступ к 1С для Анны Ивановой.\nОна вернулась из отпуска.", "С уважением,\nбухгалтерия ООО «Ромашка»\n\nПрошу восстановить доступ к 1С для Анны Ивановой.\nОна вернулась из отпуска."),
    ("begins_with_footer_then_content", "Sent from my iPhone\nthe app crashes on start, see the video.", "Sent from my iPhone\nthe app crashes on start, see the video."),
    ("begins_with_delimiter_then_content", "-- \nне могу войти в систему, пароль не подходит.\nЧто делать?", "--\nне могу войти в систему, пароль не подходит.\nЧто делать?"),
    ("begins_with_thanks_name_above_quote", "Спасибо,\nИван\n\n> old", "Спасибо,\nИван"),
    # --- prose that looks like a marker ----------------------------------------------------
    ("prose_from", "From: the log I see a timeout.\nPlease check.", "From: the log I see a timeout.\nPlease check."),
    ("prose_from_ru", "От: кого пришло письмо, не знаю.\nНо в нём вирус.", "От: кого пришло письмо, не знаю.\nНо в нём вирус."),
    ("prose_above_attribution_not_swallowed", "I will try to fix it as soon as I\nget back to a computer.\nOn Dec 8, 2013 2:10 PM, \"John Sullivan\" <notifications@github.com> wrote:\n\n> Your code shortens the sequence.", "I will try to fix it as soon as I\nget back to a computer."),
    ("sent_from_my_desk_is_content", "Here is another email\n\nSent from my desk, is much easier than my mobile phone.", "Here is another email\n\nSent from my desk, is much easier than my mobile phone."),
    ("prose_wrote", "My colleague wrote:\nthe service does not start after 10 minutes.", "My colleague wrote:\nthe service does not start after 10 minutes."),
    ("grep_output_with_dashes", "grep shows:\nerror 1\n--\nerror 2\n--\nerror 3\n\nWhat does it mean?", "grep shows:\nerror 1\n--\nerror 2\n--\nerror 3\n\nWhat does it mean?"),
    ("rule_line_as_divider", "Шаги:\n1. Открыть отчёт\n____________________\n2. Нажать «Печать»", "Шаги:\n1. Открыть отчёт\n____________________\n2. Нажать «Печать»"),
    ("prose_from_ru_mid_text", "Добрый день!\nОт: отдела продаж пришёл запрос\nна новый отчёт, прошу помочь.", "Добрый день!\nОт: отдела продаж пришёл запрос\nна новый отчёт, прошу помочь."),
    ("prose_from_ru_with_subject_line", "Добрый день!\nСегодня утром\nОт: отдела продаж пришёл запрос на новый отчёт.\nКому его назначить?\nТема: отчёт по складу, срочно.", "Добрый день!\nСегодня утром\nОт: отдела продаж пришёл запрос на новый отчёт.\nКому его назначить?\nТема: отчёт по складу, срочно."),
    ("prose_vy_pisali", "Вы писали мне в 10:00:\nчто всё исправлено, но ошибка осталась.", "Вы писали мне в 10:00:\nчто всё исправлено, но ошибка осталась."),
    ("console_prompt_is_not_a_quote", "Запрос падает:\nmysql> SELECT * FROM t;\nERROR 1146\nMySQL> show tables;", "Запрос падает:\nmysql> SELECT * FROM t;\nERROR 1146\nMySQL> show tables;"),
    # --- degenerate input ------------------------------------------------------------------
    ("empty", "", ""),
    ("whitespace_only", "  \n\t\n", ""),
    ("outer_blank_lines_and_trailing_spaces", "\n\n  Отступ оставляем.   \nХвост убираем.\t\n\n\n", "  Отступ оставляем.\nХвост убираем."),
    ("cr_leftovers", "Ответ на заявку.\r\n\r\n03.03.2025 10:15, SIS Support пишет:\r> старое\r\n", "Ответ на заявку."),
]  # fmt: skip

# HTML-only mail as the clients send it; parse_message turns it to text with html_to_text
# (blockquotes become '>' lines) before split_reply sees it.
HTML_CASES = [
    ("outlook_ru_html", "<html><body><div class=WordSection1><p class=MsoNormal>Добрый день!<o:p></o:p></p><p class=MsoNormal>Отчёт открылся.<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p><div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'><p class=MsoNormal><b>От:</b> Иван Петров &lt;ivan@example.com&gt; <br><b>Отправлено:</b> 3 марта 2025 г. 10:00<br><b>Кому:</b> SIS Support &lt;info@sis.ru&gt;<br><b>Тема:</b> RE: [SIS #1042] Не открывается отчёт<o:p></o:p></p></div></div><p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>Попробуйте ещё раз.<o:p></o:p></p></div></body></html>", "Добрый день!\nОтчёт открылся."),
    ("outlook_ru_date_html", "<html><body><div class=WordSection1><p class=MsoNormal>Готово.<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p><div style='border:none;border-top:solid #B5C4DF 1.0pt;padding:3.0pt 0cm 0cm 0cm'><p class=MsoNormal><b><span style='font-size:10.0pt'>От:</span></b><span style='font-size:10.0pt'> Иван Петров [mailto:ivan@example.com] <br><b>Дата:</b> Monday, March 03, 2025 10:00 AM<br><b>Кому:</b> SIS Support<br><b>Тема:</b> отчёт<o:p></o:p></span></p></div><p class=MsoNormal>старое<o:p></o:p></p></div></body></html>", "Готово."),
    ("outlook_web_en_html", "<html><body><div dir=\"ltr\"><div style=\"font-family: Aptos\">Fixed, thanks.</div><div id=\"appendonsend\"></div><hr style=\"display:inline-block;width:98%\" tabindex=\"-1\"><div id=\"divRplyFwdMsg\" dir=\"ltr\"><font face=\"Calibri, sans-serif\" style=\"font-size:11pt\" color=\"#000000\"><b>From:</b> Ivan Petrov &lt;ivan@example.com&gt;<br><b>Sent:</b> Monday, March 3, 2025 10:00 AM<br><b>To:</b> SIS Support &lt;info@sis.ru&gt;<br><b>Subject:</b> RE: [SIS #7] Sync error</font><div>&nbsp;</div></div><div>old</div></div></body></html>", "Fixed, thanks."),
    ("outlook_android_html", "<html><body><div dir=\"auto\">Call me.</div><div dir=\"auto\"><br></div><div id=\"ms-outlook-mobile-signature\"><div dir=\"auto\">Get <a href=\"https://aka.ms/AAb9ysg\">Outlook for Android</a></div></div><hr style=\"display:inline-block;width:98%\"><div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b> SIS Support &lt;info@sis.ru&gt;<br><b>Sent:</b> Monday, March 3, 2025 10:00:00 AM<br><b>To:</b> Ivan Petrov &lt;ivan@example.com&gt;<br><b>Subject:</b> Re: ticket<div>&nbsp;</div></div><div>old</div></body></html>", "Call me."),
    ("outlook_en_original_html", "<html><body><p>Fixed.</p><p>-----Original Message-----<br>From: Ivan Petrov [mailto:ivan@example.com]<br>Sent: Monday, March 03, 2025 10:00 AM<br>To: SIS Support<br>Subject: Sync error</p><p>old</p></body></html>", "Fixed."),
    ("gmail_ru_html", "<div dir=\"ltr\">Спасибо, работает.</div><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">пн, 3 мар. 2025 г. в 10:00, Иван Петров &lt;<a href=\"mailto:ivan@example.com\">ivan@example.com</a>&gt;:<br></div><blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex\"><div dir=\"ltr\">Попробуйте ещё раз.</div></blockquote></div>", "Спасибо, работает."),
    ("gmail_en_html", "<div dir=\"ltr\">Works.</div><br><div class=\"gmail_quote gmail_quote_container\"><div dir=\"ltr\" class=\"gmail_attr\">On Mon, Mar 3, 2025 at 10:00 AM Ivan Petrov &lt;<a href=\"mailto:ivan@example.com\">ivan@example.com</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\"><div dir=\"ltr\">Try again.</div></blockquote></div>", "Works."),
    ("gmail_en_html_sig", "<div dir=\"ltr\"><div>Works.</div><div><br></div><span class=\"gmail_signature_prefix\">-- </span><br><div dir=\"ltr\" class=\"gmail_signature\"><div dir=\"ltr\">Ivan Petrov<div>ACME Ltd.</div></div></div></div><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">On Mon, Mar 3, 2025 at 10:00 AM SIS &lt;<a href=\"mailto:info@sis.ru\">info@sis.ru</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\"><div dir=\"ltr\">Try again.</div></blockquote></div>", "Works."),
    ("gmail_inline_html", "<div dir=\"ltr\">Answers below.</div><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">On Mon, Mar 3, 2025 at 10:00 AM SIS &lt;<a href=\"mailto:info@sis.ru\">info@sis.ru</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\"><div dir=\"ltr\">Which version?</div></blockquote><div>4.2</div><blockquote class=\"gmail_quote\"><div>Which OS?</div></blockquote><div>Windows 10</div></div>", "Answers below.\n\n4.2\nWindows 10"),
    ("thunderbird_ru_html", "<html><body><p>Версия 4.2.</p><div class=\"moz-cite-prefix\">03.03.2025 10:00, Иван Петров пишет:<br></div><blockquote type=\"cite\" cite=\"mid:abc@example.com\"><p>Какая версия?</p></blockquote><div class=\"moz-signature\">-- <br>Пётр Сидоров</div></body></html>", "Версия 4.2."),
    ("thunderbird_en_html", "<html><body><p>Version 4.2.</p><div class=\"moz-cite-prefix\">On 3/3/25 10:00, Ivan Petrov wrote:<br></div><blockquote type=\"cite\"><p>Which version?</p></blockquote></body></html>", "Version 4.2."),
    ("thunderbird_inline_html", "<html><body><div class=\"moz-cite-prefix\">On 3/3/25 10:00, Ivan Petrov wrote:<br></div><blockquote type=\"cite\"><p>Which version?</p></blockquote><p>4.2</p><blockquote type=\"cite\"><p>Which OS?</p></blockquote><p>Windows 10</p><pre class=\"moz-signature\" cols=\"72\">-- \nPetr</pre></body></html>", "4.2\nWindows 10"),
    ("apple_ru_html", "<html><body dir=\"auto\">Спасибо<div><br></div><div><br><blockquote type=\"cite\"><div>3 марта 2025 г., в 10:00, Иван Петров &lt;<a href=\"mailto:ivan@example.com\">ivan@example.com</a>&gt; написал(а):</div><br class=\"Apple-interchange-newline\"><div><div>Попробуйте.</div></div></blockquote></div></body></html>", "Спасибо"),
    ("apple_ru_iphone_html", "<html><body dir=\"auto\">Спасибо<br><br><div dir=\"ltr\">Отправлено с iPhone</div><div dir=\"ltr\"><br><blockquote type=\"cite\">3 марта 2025 г., в 10:00, Иван Петров &lt;ivan@example.com&gt; написал(а):<br><br></blockquote></div><blockquote type=\"cite\"><div dir=\"ltr\">Попробуйте.</div></blockquote></body></html>", "Спасибо"),
    ("apple_en_html", "<html><body>Thanks<div><br><div><blockquote type=\"cite\"><div>On 3 Mar 2025, at 10:00, Ivan Petrov &lt;ivan@example.com&gt; wrote:</div><br><div>Try.</div></blockquote></div></div></body></html>", "Thanks"),
    ("yandex_html", "<div>Принято.</div><div>&nbsp;</div><div>-- <br />С уважением,<br />Иван Петров</div><div>&nbsp;</div><div>&nbsp;</div><div>03.03.2025, 10:00, \"SIS Support\" &lt;info@sis.ru&gt;:</div><blockquote><div>Заявка закрыта.</div></blockquote>", "Принято."),
    ("yandex_mobile_html", "<div>Принято.<br /><br />-- <br />Отправлено из Яндекс Почты для мобильных</div><div><br />03.03.2025, 10:00, \"SIS Support\" &lt;info@sis.ru&gt;:<br /><blockquote><div>Заявка закрыта.</div></blockquote></div>", "Принято."),
    ("mailru_html", "<HTML><BODY><div>Понял.</div><div>&nbsp;</div><div data-signature-widget=\"container\"><div data-signature-widget=\"content\"><div>--<br>Иван Петров</div></div></div><div>&nbsp;</div><blockquote style=\"border-left:1px solid #0857A6; margin:10px; padding:0 0 0 10px;\">Понедельник, 3 марта 2025, 10:00 +03:00 от SIS Support &lt;<a href=\"mailto:info@sis.ru\">info@sis.ru</a>&gt;:<br>&nbsp;<div id=\"\"><div class=\"js-helper js-readmsg-msg\"><div><div>Нужна перезагрузка.</div></div></div></div></blockquote></BODY></HTML>", "Понял."),
    ("mailru_mobile_html", "<HTML><BODY><div>Понял.</div><div><br>--<br>Отправлено из мобильной Почты Mail.ru</div><br><br><br>Понедельник, 3 марта 2025, 10:00 +03:00 от SIS Support &lt;info@sis.ru&gt;:<br><blockquote style=\"border-left:1px solid #0857A6;\"><div>Нужна перезагрузка.</div></blockquote></BODY></HTML>", "Понял."),
    ("mailru_old_html", "<div>Понял.</div><br><br>--- Исходное сообщение ---<br>От кого: SIS Support &lt;info@sis.ru&gt;<br>Кому: Иван &lt;ivan@mail.ru&gt;<br>Дата: Понедельник, 3 марта 2025, 10:00 +03:00<br>Тема: отчёт<br><br>старое", "Понял."),
]  # fmt: skip


@pytest.mark.parametrize(("body", "new_text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_new_text(body, new_text):
    assert split_reply(body).new_text == new_text


@pytest.mark.parametrize(
    ("html", "new_text"), [c[1:] for c in HTML_CASES], ids=[c[0] for c in HTML_CASES]
)
def test_new_text_from_html(html, new_text):
    assert split_reply(html_to_text(html)).new_text == new_text


def test_case_ids_are_unique():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30
    assert len({case[0] for case in HTML_CASES}) == len(HTML_CASES)


@pytest.mark.parametrize(
    ("body", "parts"),
    [
        pytest.param(
            "Ок.\n\nС уважением,\nИван\nООО «Ромашка»\n\n03.03.2025 10:15, SIS пишет:\n> старое",
            ReplyParts(
                "Ок.\n\nС уважением,\nИван",
                "03.03.2025 10:15, SIS пишет:\n> старое",
                "ООО «Ромашка»",
            ),
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
            "Спасибо\n\nОтправлено с iPhone",
            ReplyParts("Спасибо", "", "Отправлено с iPhone"),
            id="thanks_is_text_when_a_footer_follows",
        ),
        pytest.param(
            "Спасибо,\nИван\n\n> old",
            ReplyParts("Спасибо,\nИван", "> old", ""),
            id="fallback_leaves_inline_quote_out",
        ),
        pytest.param(
            "Здравствуйте.\n\nВы писали 3 марта 2025 г., 10:00:01:\nИП> Версия?\n\n4.2",
            ReplyParts(
                "Здравствуйте.\n\n4.2", "Вы писали 3 марта 2025 г., 10:00:01:\nИП> Версия?", ""
            ),
            id="thebat_initials_quote_goes_to_history",
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
        " " * 280 + ", you wrote:",
        "Вы писали " + "1" * 280 + ":",
        "Вы писали 3 марта 2025 г., 10:00:01:",
        "ИП> " + "a" * 280,
        "Sent from " + "my phone " * 10,
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


# --- shared_passage: a notice left in an answer ---------------------------------------------

NOTICE = (
    "[SIS #5] Новое обращение: Не открывается отчёт\n"
    "Первый ответ до: 03.03.2026 20:00 MSK\n\n"
    "Клиент пишет: отчёт по складу не открывается после обновления модуля учёта\n"
)
CLIENT = "Добрый день! Отчёт по складу не открывается после обновления модуля учёта"


def test_shared_passage_survives_rewrapping_and_quote_marks():
    answer = "Обновите модуль.\n\n> [SIS #5] Новое\n> обращение: Не открывается\n> отчёт Первый"
    assert shared_passage(answer, [NOTICE], [CLIENT]) == (
        "sis 5 новое обращение не открывается отчёт первый"
    )


def test_shared_passage_ignores_what_other_messages_say():
    # The client's own words quoted back are no leak, however long.
    answer = "Вы пишете: отчёт по складу не открывается после обновления модуля учёта."
    assert shared_passage(answer, [NOTICE], [CLIENT]) is None


def test_shared_passage_needs_a_run_of_words():
    assert shared_passage("Первый ответ до завтра", [NOTICE], []) is None
    assert shared_passage("", [NOTICE], []) is None
    assert shared_passage("любой текст любой длины здесь и там и сям", [], []) is None
