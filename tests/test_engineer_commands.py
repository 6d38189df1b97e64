"""Engineers by mail, through the whole pipeline on both databases: answers relayed to the
client, internal comments, and each command, accepted and refused."""

from __future__ import annotations

import email
import email.header
import email.utils
from datetime import timedelta

import pytest
from sqlalchemy import select

from maild import compose
from maild.commands import CLOSE_REASONS, REQUEST_ITEMS
from storage.models import Event, Message, OutboxMessage, Ticket
from storage.views import ticket_detail
from tests.mailbuilder import build_mail
from tests.test_pipeline import client_outbox, ingest, notices, outbox
from threading_rules.token import format_token

TRUST = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\n'
PETROVA = '[[engineers]]\nemail = "petrova@sis.ru"\nname = "Мария Петрова"\n'
PROVEN = {"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"}
CLIENT = "sidorov@stroymontazh.ru"


@pytest.fixture
def app(make_app):
    return make_app(TRUST + PETROVA)


def client_writes(app, *, message_id: str = "<req-1@stroymontazh.ru>", **fields) -> int:
    return ingest(app, build_mail(message_id=message_id, **fields)).ticket


def engineer_writes(
    app, body: str, *, subject: str = "Re: [SIS #1] Не открывается отчёт",
    sender: str = "Иван Иванов <ivanov@sis.ru>", proven: bool = True, **fields,
):  # fmt: skip
    headers = dict(PROVEN) if proven else {}
    headers.update(fields.pop("headers", {}))
    raw = build_mail(sender=sender, subject=subject, body=body, headers=headers, **fields)
    return ingest(app, raw)


def body_of(row: OutboxMessage) -> str:
    mail = email.message_from_bytes(row.raw)
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode().replace("\r\n", "\n")


def decoded(value: str) -> str:
    return str(email.header.make_header(email.header.decode_header(value)))


def ticket(app, number: int = 1) -> dict:
    with app.sessions() as session:
        detail = ticket_detail(session, number, "SIS")
    assert detail is not None
    return detail


def confirmation(app) -> str:
    rows = [row for row in outbox(app) if row.purpose == "command_result"]
    assert rows, "the engineer got no confirmation"
    assert rows[-1].recipient == "ivanov@sis.ru"
    return body_of(rows[-1])


def to_client(app, purpose: str | None = None) -> list[OutboxMessage]:
    rows = [r for r in client_outbox(app) if r.purpose != "acknowledgement"]
    return [r for r in rows if purpose is None or r.purpose == purpose]


def db_ticket(app, number: int = 1) -> Ticket:
    with app.sessions() as session:
        found = session.get(Ticket, number)
        assert found is not None
        session.expunge(found)
        return found


# --- notices --------------------------------------------------------------------------------


def test_new_ticket_notice_carries_what_the_engineer_needs(app):
    client_writes(app, body="Добрый день!\nНе открывается отчёт.", cc="glavbuh@stroymontazh.ru")
    [notice] = notices(app)
    assert notice.purpose == "ticket_notice"
    mail = email.message_from_bytes(notice.raw)
    assert {a for _, a in email.utils.getaddresses([mail["To"]])} == {
        "ivanov@sis.ru", "petrova@sis.ru",
    }  # fmt: skip
    assert mail["Reply-To"] == "info@sis.ru"  # a plain reply comes back to maild
    assert mail["In-Reply-To"] == "<req-1@stroymontazh.ru>"
    assert decoded(mail["Subject"]) == "[SIS #1] Новое обращение: Не открывается отчёт"
    assert decoded(mail["From"]).startswith("Пётр Сидоров (SIS Support) <info@sis.ru>")
    body = body_of(notice)
    assert "Не открывается отчёт." in body
    assert "Критичность: high" in body  # "не открывается" is a main function failing
    # High, public offer in working time: 4 working hours from Tue 12:00 (lunch 13-14 not
    # counted); 72 working hours reach Tue 17 March 12:00 (9 March is off: 8 March moved).
    assert "Первый ответ до: 03.03.2026 17:00 MSK" in body
    assert "Решение до: 17.03.2026 12:00 MSK" in body
    assert "версия продукта Cubisio" in body  # the missing checklist items
    assert "#comment" in body
    assert "info+comment@sis.ru" in body


def test_notice_lists_the_tickets_files(app):
    client_writes(app, attachments=[("app.log", b"ERROR boom\n" * 50, "text/plain")])
    ingest(app, build_mail(
        subject="Re: [SIS #1] Не открывается отчёт", body="Вот снимок.",
        message_id="<req-2@stroymontazh.ru>",
        attachments=[("screen.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png")],
    ))  # fmt: skip
    follow_up = notices(app)[-1]
    assert decoded(email.message_from_bytes(follow_up.raw)["Subject"]).startswith(
        "[SIS #1] Ответ клиента:"
    )
    body = body_of(follow_up)
    assert "- app.log (журнал, 550 B)" in body
    assert "- screen.png (снимок экрана, 108 B) — новое" in body
    assert "снимки экрана" not in body  # no longer missing


def test_assigned_ticket_notifies_only_the_assignee(app):
    client_writes(app)
    engineer_writes(app, "#assign petrova")
    ingest(app, build_mail(subject="Re: [SIS #1] x", message_id="<req-2@stroymontazh.ru>"))
    assert notices(app)[-1].recipient == "petrova@sis.ru"
    assert email.message_from_bytes(notices(app)[-1].raw)["To"].endswith("<petrova@sis.ru>")


def test_team_address_instead_of_every_engineer(make_app):
    app = make_app(TRUST + '[notifications]\nteam_address = "support-team@sis.ru"\n' + PETROVA)
    client_writes(app)
    assert [n.recipient for n in notices(app)] == ["support-team@sis.ru"]


# --- answers --------------------------------------------------------------------------------


THUNDERBIRD_REPLY = """Пётр, добрый день!

Обновите, пожалуйста, Cubisio до 3.2.2: в ней это исправлено.

03.03.2026 12:15, SIS Support пишет:
> [SIS #1] Новое обращение: Не открывается отчёт
> Клиент: Пётр Сидоров <sidorov@stroymontazh.ru>
"""


def test_engineer_answer_is_relayed_to_the_client_without_quotes(app):
    client_writes(app)
    notice_id = email.message_from_bytes(notices(app)[0].raw)["Message-ID"]
    result = engineer_writes(
        app, THUNDERBIRD_REPLY, subject="Re: [SIS #1] Новое обращение: Не открывается отчёт",
        in_reply_to=notice_id,
    )  # fmt: skip
    assert (str(result.action), result.ticket) == ("follow_up", 1)
    assert "answer relayed to sidorov@stroymontazh.ru" in result.explanation
    [answer] = to_client(app)
    assert (answer.purpose, answer.recipient, answer.envelope_from) == (
        "answer", CLIENT, "info@sis.ru",
    )  # fmt: skip
    mail = email.message_from_bytes(answer.raw)
    assert decoded(mail["From"]) == "Иван Иванов (SIS Support) <info@sis.ru>"
    assert decoded(mail["Subject"]) == "[SIS #1] Не открывается отчёт"
    assert mail["In-Reply-To"] == "<req-1@stroymontazh.ru>"
    assert mail["Reply-To"] == "info@sis.ru"
    # A person's answer (SPEC): no Auto-Submitted, so the client's filters treat it as one.
    assert mail["Auto-Submitted"] is None
    assert mail["X-Loop"] == "info@sis.ru"
    body = body_of(answer)
    assert body.startswith("Пётр, добрый день!\n\nОбновите, пожалуйста, Cubisio до 3.2.2")
    assert "пишет:" not in body
    assert "Новое обращение" not in body
    assert "Обращение [SIS #1]: Не открывается отчёт" in body
    assert not [n for n in notices(app) if n.purpose == "command_result"]  # nothing to confirm
    detail = ticket(app)
    assert detail["status"] == "open"
    assert detail["sla"]["first_response_at"] == "2026-03-03T09:00:00+00:00"
    answer_view = detail["messages"][-1]
    assert (answer_view["direction"], answer_view["visibility"], answer_view["kind"]) == (
        "out", "public", "answer",
    )  # fmt: skip
    assert answer_view["sender"] == "ivanov@sis.ru"
    assert answer_view["text"].startswith("Пётр, добрый день!")
    assert "пишет:" not in answer_view["text"]


def test_answer_reaches_the_tickets_cc_participants_and_relays_attachments(app):
    client_writes(app, cc="Главбух <glavbuh@stroymontazh.ru>")
    patch = b"patch notes\n" * 20
    engineer_writes(app, "Высылаю инструкцию.", attachments=[
        ("инструкция.txt", patch, "text/plain")])  # fmt: skip
    [answer] = to_client(app)
    assert answer.recipients.split(",") == [CLIENT, "glavbuh@stroymontazh.ru"]
    mail = email.message_from_bytes(answer.raw)
    assert "glavbuh@stroymontazh.ru" in mail["Cc"]
    [file] = [p for p in mail.walk() if p.get_filename()]
    assert decoded(file.get_filename()) == "инструкция.txt"
    assert file.get_payload(decode=True) == patch
    [stored] = ticket(app)["messages"][-1]["attachments"]
    assert stored["filename"] == "инструкция.txt"


def test_client_reply_to_the_answer_threads_and_notifies_again(app):
    client_writes(app)
    engineer_writes(app, "Обновите до 3.2.2.")
    [answer] = to_client(app)
    answer_id = email.message_from_bytes(answer.raw)["Message-ID"]
    result = ingest(app, build_mail(
        subject="Re: Не открывается отчёт", body="Спасибо, помогло.", in_reply_to=answer_id,
        message_id="<req-2@stroymontazh.ru>",
    ))  # fmt: skip
    assert (str(result.action), result.ticket, result.reason) == (
        "follow_up",
        1,
        "in_reply_to_match",
    )
    assert "Спасибо, помогло." in body_of(notices(app)[-1])


def test_engineer_mail_without_a_ticket_is_refused_with_an_explanation(app):
    result = engineer_writes(app, "Коллеги, привет.", subject="Обед")
    assert (str(result.action), result.reason) == ("ignored", "engineer_without_ticket")
    with app.sessions() as session:
        assert session.scalar(select(Ticket.id)) is None
        [row] = session.scalars(select(OutboxMessage)).all()
    assert (row.purpose, row.recipient, row.message_id) == ("command_result", "ivanov@sis.ru", None)
    assert "не относится ни к одному обращению" in body_of(row)


# --- internal comments ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["first_line", "comment_address"])
def test_internal_comment_goes_to_the_other_engineers_only(app, how):
    client_writes(app)
    if how == "first_line":
        engineer_writes(app, "#comment\nКлиент ругается, но по делу.")
    else:
        engineer_writes(app, "Клиент ругается, но по делу.", to="info+comment@sis.ru")
    assert to_client(app) == []
    comment_notice = notices(app)[-1]
    assert (comment_notice.purpose, comment_notice.recipient) == (
        "comment_notice",
        "petrova@sis.ru",
    )
    assert "Клиент ругается, но по делу." in body_of(comment_notice)
    comment = ticket(app)["messages"][-1]
    assert (comment["visibility"], comment["kind"], comment["text"]) == (
        "internal", "comment", "Клиент ругается, но по делу.",
    )  # fmt: skip
    assert ticket(app)["sla"]["first_response_at"] is None  # a comment answers nobody


def test_reply_to_a_comment_notice_stays_internal(app):
    # The engineer's mail program sends the reply to the support address (the notice's
    # Reply-To), with the quoted comment below: it is a comment, never an answer.
    client_writes(app)
    engineer_writes(app, "#comment\nКлиент ругается, но по делу.")
    [comment_notice] = [n for n in notices(app) if n.purpose == "comment_notice"]
    notice_id = email.message_from_bytes(comment_notice.raw)["Message-ID"]
    engineer_writes(
        app, "Согласна, попросим дамп.\n\n> Клиент ругается, но по делу.",
        sender="Мария Петрова <petrova@sis.ru>", headers={"In-Reply-To": notice_id},
        message_id="<petrova-1@sis.ru>",
    )  # fmt: skip
    assert to_client(app) == []
    reply = ticket(app)["messages"][-1]
    assert (reply["visibility"], reply["kind"], reply["text"]) == (
        "internal", "comment", "Согласна, попросим дамп.",
    )  # fmt: skip
    assert notices(app)[-1].purpose == "comment_notice"
    assert notices(app)[-1].recipient == "ivanov@sis.ru"  # the other engineer
    assert "Ответ на это письмо тоже останется внутренним" in body_of(comment_notice)


def test_answer_that_still_carries_a_notice_is_held(app):
    # Quote stripping found no marker (the notice pasted under the answer as is): the
    # notice's own words must not reach the client.
    client_writes(app, body="Добрый день!\nНе открывается отчёт.")
    [notice] = notices(app)
    engineer_writes(app, "Обновите модуль отчётов до версии 5.2.\n\n" + body_of(notice))
    assert to_client(app) == []
    body = confirmation(app)
    assert "Текст письма клиенту НЕ отправлен: в нём осталась цитата служебного уведомления" in (
        body
    )
    held = ticket(app)["messages"][-1]
    assert (held["visibility"], held["kind"]) == ("internal", "held")
    assert held["text"].startswith("Обновите модуль отчётов до версии 5.2.")
    assert ticket(app)["sla"]["first_response_at"] is None
    with app.sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "answer_held")).one()
    assert event.reason == "quoted_notice"


def test_quoting_the_client_is_no_leak(app):
    sentence = "При нажатии кнопки печати в модуле складского учёта появляется ошибка 0x80004005."
    client_writes(app, body=f"Добрый день!\n{sentence}")
    engineer_writes(app, f"Вы пишете: {sentence}\nОбновите драйвер принтера.")
    [answer] = to_client(app, "answer")
    assert "Обновите драйвер принтера." in body_of(answer)


def test_an_internal_comment_pasted_into_an_answer_is_held(app):
    client_writes(app)
    comment = "Похоже на ту же ошибку драйвера принтера, что была у них в прошлом году."
    engineer_writes(app, f"#comment\n{comment}")
    engineer_writes(app, f"{comment}\nОбновите драйвер.")
    assert to_client(app) == []
    assert "цитата служебного уведомления" in confirmation(app)


def test_sending_a_held_answer_again_is_held_again(app):
    # The held message carries the notice; it must not make the notice "known" text.
    client_writes(app)
    [notice] = notices(app)
    leaky = "Обновите модуль отчётов до версии 5.2.\n\n" + body_of(notice)
    engineer_writes(app, leaky, message_id="<ivanov-1@sis.ru>")
    engineer_writes(app, "Повторно: " + leaky, message_id="<ivanov-2@sis.ru>")
    assert to_client(app) == []
    # Nor does a comment that quoted the notice.
    engineer_writes(app, "#comment\nСмотрю.\n\n" + body_of(notice), message_id="<ivanov-3@sis.ru>")
    engineer_writes(app, "Ответ.\n\n" + body_of(notice), message_id="<ivanov-4@sis.ru>")
    assert to_client(app) == []


def test_accepted_commands_still_tell_the_client_when_the_text_is_held(app):
    # #close already closed the ticket: the client gets the closing notice even though the
    # refused #priority holds the engineer's text back.
    client_writes(app)
    engineer_writes(app, "#close solved\n#priority urgent\n\nРады, что всё заработало.")
    [closing] = to_client(app)
    assert closing.purpose == "closing"
    body = body_of(closing)
    assert "закрыто: проблема решена" in body
    assert "Рады, что всё заработало." not in body
    assert db_ticket(app).status == "closed"
    assert "Текст письма клиенту НЕ отправлен" in confirmation(app)


@pytest.mark.parametrize(
    ("first_line", "kind"),
    [("#comment: клиент пират", "comment"), ("# comment", "comment"), ("#комментарий", "held")],
)
def test_mistyped_comment_lines_never_reach_the_client(app, first_line, kind):
    client_writes(app)
    engineer_writes(app, f"{first_line}\nне говорите ему")
    assert to_client(app) == []
    assert ticket(app)["messages"][-1]["kind"] == kind


def test_comment_text_on_the_command_line_is_kept(app):
    client_writes(app)
    engineer_writes(app, "#comment ключ лицензии в журнале, не пересылать")
    comment = ticket(app)["messages"][-1]
    assert (comment["kind"], comment["text"]) == (
        "comment",
        "ключ лицензии в журнале, не пересылать",
    )


def test_commands_in_a_comment_still_tell_the_client(app):
    client_writes(app)
    engineer_writes(app, "#comment\n#close solved\nЗакрываю, клиент подтвердил по телефону.")
    [closing] = to_client(app)
    assert closing.purpose == "closing"
    assert "Закрываю" not in body_of(closing)
    [comment] = [m for m in ticket(app)["messages"] if m["kind"] == "comment"]
    assert comment["text"] == "Закрываю, клиент подтвердил по телефону."
    assert db_ticket(app).status == "closed"


def test_new_with_a_request_sends_the_request(app):
    engineer_writes(
        app, f"#new {CLIENT}\n#request logs\nЗвонил клиент: не открывается отчёт.",
        subject="Звонок: отчёт",
    )  # fmt: skip
    purposes = [r.purpose for r in client_outbox(app)]
    assert purposes == ["acknowledgement", "request"]
    assert "Журналы (логи)" in body_of(to_client(app, "request")[0])


def test_a_reply_with_only_a_file_relays_the_file(app):
    client_writes(app)
    engineer_writes(
        app, "", attachments=[("fix.reg", b"Windows Registry Editor\r\n", "text/plain")]
    )
    [answer] = to_client(app, "answer")
    mail = email.message_from_bytes(answer.raw)
    assert [part.get_filename() for part in mail.walk() if part.get_filename()] == ["fix.reg"]


def test_commands_with_only_a_file_keep_the_file_and_say_so(app):
    client_writes(app)
    engineer_writes(app, "#take", attachments=[("internal.log", b"debug\n" * 10, "text/plain")])
    assert to_client(app) == []
    assert "Вложения сохранены в обращении как внутренние" in confirmation(app)


# --- commands -------------------------------------------------------------------------------


def test_take(app):
    client_writes(app)
    engineer_writes(app, "#take")
    assert ticket(app)["assignee"] == "ivanov@sis.ru"
    assert "✔ #take — обращение назначено на вас" in confirmation(app)
    assert to_client(app) == []  # commands alone send the client nothing


@pytest.mark.parametrize("who", ["petrova", "Петрова", "petrova@sis.ru", "Мария Петрова"])
def test_assign_by_name_or_address_and_the_assignee_is_told(app, who):
    client_writes(app)
    engineer_writes(app, f"#assign {who}")
    assert ticket(app)["assignee"] == "petrova@sis.ru"
    assert f"✔ #assign {who} — обращение назначено на Мария Петрова" in confirmation(app)
    told = notices(app)[-2]  # the assignee's notice, then the confirmation
    assert told.recipient == "petrova@sis.ru"
    assert decoded(email.message_from_bytes(told.raw)["Subject"]).startswith(
        "[SIS #1] Назначено вам:"
    )


@pytest.mark.parametrize(
    ("argument", "says"),
    [("sidorov", "такого инженера нет"), ("", "не хватает аргумента")],
)
def test_assign_unknown_engineer_is_refused(app, argument, says):
    client_writes(app)
    engineer_writes(app, f"#assign {argument}".strip())
    assert ticket(app)["assignee"] is None
    assert says in confirmation(app)


def test_priority(app):
    client_writes(app)
    engineer_writes(app, "#priority critical")
    assert ticket(app)["criticality"] == "critical"
    assert "✔ #priority critical — критичность: high → critical" in confirmation(app)


def test_refused_command_holds_the_text_back(app):
    client_writes(app)
    engineer_writes(app, "#priority urgent\n\nПереводим в срочные.")
    assert ticket(app)["criticality"] == "high"  # as set on arrival: the command was refused
    body = confirmation(app)
    assert (
        "✘ #priority urgent — неизвестное значение; допустимо: critical, high, normal, low" in body
    )
    assert "Текст письма клиенту НЕ отправлен" in body
    assert to_client(app) == []
    held = ticket(app)["messages"][-1]
    assert (held["visibility"], held["kind"], held["text"]) == (
        "internal", "held", "Переводим в срочные.",
    )  # fmt: skip


def test_unknown_command_holds_the_text_back(app):
    # A mistyped #comment must never send an internal remark to the client.
    client_writes(app)
    engineer_writes(app, "#coment\nКлиент, похоже, сам всё сломал.")
    assert to_client(app) == []
    assert "✘ #coment — неизвестная команда" in confirmation(app)


def test_status_and_the_client_reply_reopens_waiting(app):
    client_writes(app)
    engineer_writes(app, "#status waiting")
    assert ticket(app)["status"] == "waiting"
    assert "статус: new → waiting" in confirmation(app)
    ingest(app, build_mail(subject="Re: [SIS #1] x", message_id="<req-2@stroymontazh.ru>"))
    assert ticket(app)["status"] == "open"
    engineer_writes(app, "#status done")
    assert "✘ #status done" in confirmation(app)


def test_close_with_a_reason_tells_the_client(app):
    client_writes(app)
    engineer_writes(app, "#close out_of_scope")
    found = db_ticket(app)
    assert (found.status, found.close_reason, found.closed_at is not None) == (
        "closed", "out_of_scope", True,
    )  # fmt: skip
    [closing] = to_client(app)
    assert closing.purpose == "closing"
    body = body_of(closing)
    assert "проектным задачам заказчика" in body
    assert "Обращение [SIS #1]" in body
    assert "✔ #close out_of_scope — обращение закрыто (проектные работы заказчика)" in (
        confirmation(app)
    )


def test_close_with_an_answer_sends_one_mail(app):
    client_writes(app)
    engineer_writes(app, "#close solved\n\nРады, что всё заработало.")
    [mail] = to_client(app)
    body = body_of(mail)
    assert body.index("Рады, что всё заработало.") < body.index("закрыто: проблема решена")


def test_close_unknown_reason_is_refused(app):
    client_writes(app)
    engineer_writes(app, "#close whatever")
    assert db_ticket(app).status == "new"
    assert "допустимо: solved, workaround, fixed_in_version" in confirmation(app)


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("reason", CLOSE_REASONS)
def test_every_closing_reason_has_its_own_text(reason, language):
    ticket_token = format_token("SIS", 1)
    text = compose.render("closed", language, reason=reason, token=ticket_token, reopen_days=14)
    others = [
        compose.render("closed", language, reason=r, token=ticket_token, reopen_days=14)
        for r in CLOSE_REASONS if r != reason
    ]  # fmt: skip
    assert "[SIS #1]" in text
    assert text not in others


@pytest.mark.parametrize("language", ["ru", "en"])
def test_request_templates_name_each_item_and_promise_confidentiality(language):
    text = compose.render("request", language, items=list(REQUEST_ITEMS))
    assert text.count("\n* ") == len(REQUEST_ITEMS)
    assert ("конфиденциальность" if language == "ru" else "confidential") in text


def test_request_sends_the_template_and_waits(app):
    client_writes(app)
    engineer_writes(app, "#request logs, dump")
    [request] = to_client(app)
    body = body_of(request)
    assert "Журналы (логи)" in body
    assert "Дамп памяти" in body
    assert "Удалённый доступ" not in body
    assert "конфиденциальность" in body
    detail = ticket(app)
    assert detail["status"] == "waiting"
    assert detail["sla"]["first_response_at"] is not None
    engineer_writes(app, "#request pizza")
    assert "✘ #request pizza — неизвестное значение; допустимо: version, remote, logs, dump" in (
        confirmation(app)
    )


def test_cc_adds_a_participant_who_then_gets_answers(app):
    client_writes(app)
    engineer_writes(app, "#cc Director@Stroymontazh.ru\n\nДобавил директора в копию.")
    [answer] = to_client(app)
    assert answer.recipients.split(",") == [CLIENT, "director@stroymontazh.ru"]
    assert "✔ #cc Director@Stroymontazh.ru — director@stroymontazh.ru добавлен(а)" in (
        confirmation(app)
    )


def test_merge_of_two_colleagues_tickets_keeps_both_told(app):
    client_writes(app)
    colleague = "Иван Петров <petrov@stroymontazh.ru>"
    ingest(app, build_mail(sender=colleague, subject="Отчёт", message_id="<p-1@stroymontazh.ru>"))
    engineer_writes(app, "#merge 2\n\nОбъединяем с обращением коллеги.")
    [told] = to_client(app)
    assert set(told.recipients.split(",")) == {"petrov@stroymontazh.ru", CLIENT}
    roles = {p["email"]: p["role"] for p in ticket(app, 2)["participants"]}
    assert roles[CLIENT] == "colleague"


def test_engineer_mail_to_a_long_merged_ticket_follows_the_merge(app):
    client_writes(app)
    client_writes(app, subject="Снова про отчёт", message_id="<req-2@stroymontazh.ru>")
    engineer_writes(app, "#merge 2")
    app.clock.current += timedelta(days=60)
    result = engineer_writes(app, "Вернулся к вопросу.", message_id="<late@sis.ru>")
    assert result.ticket == 2
    assert db_ticket(app, 1).status == "closed"
    assert "[SIS #2]" in decoded(
        email.message_from_bytes(to_client(app, "answer")[-1].raw)["Subject"]
    )


@pytest.mark.parametrize(
    ("argument", "says"),
    [("info@sis.ru", "адрес самой поддержки"), ("not-an-address", "это не адрес")],
)
def test_cc_refusals(app, argument, says):
    client_writes(app)
    engineer_writes(app, f"#cc {argument}")
    assert says in confirmation(app)
    assert {p["email"] for p in ticket(app)["participants"]} == {CLIENT}


def test_merge_moves_the_conversation_and_later_mail_follows(app):
    client_writes(app)
    client_writes(app, subject="Снова про отчёт", message_id="<req-2@stroymontazh.ru>")
    engineer_writes(app, "#merge 2")
    assert "✔ #merge 2 — обращение объединено с [SIS #2]" in confirmation(app)
    source = db_ticket(app, 1)
    assert (source.status, source.close_reason, source.merged_into_id) == ("closed", "merged", 2)
    assert [m["direction"] for m in ticket(app, 1)["messages"]] == []
    assert len([m for m in ticket(app, 2)["messages"] if m["direction"] == "in"]) == 2
    [told] = to_client(app, "merged")
    assert "объединено с обращением [SIS #2]" in body_of(told)
    later = ingest(
        app,
        build_mail(
            subject="Re: [SIS #1] Не открывается отчёт", message_id="<req-3@stroymontazh.ru>"
        ),
    )
    assert (str(later.action), later.ticket) == ("follow_up", 2)
    assert "ticket merged (1 -> 2)" in later.explanation


@pytest.mark.parametrize(
    ("argument", "says"),
    [("99", "обращения [SIS #99] нет"), ("1", "с самим собой"), ("2", "разных клиентов"),
     ("x", "нужен номер обращения")],
)  # fmt: skip
def test_merge_refusals(app, argument, says):
    client_writes(app)
    client_writes(app, sender="other@elsewhere.ru", message_id="<o@elsewhere.ru>")
    engineer_writes(app, f"#merge {argument}")
    assert says in confirmation(app)
    assert db_ticket(app, 1).merged_into_id is None


def test_new_registers_a_phone_call_for_the_client(app):
    result = engineer_writes(
        app, "#new buh@firm.ru phone\n#take\n\nЗвонила бухгалтер: Cubisio 3.2.1 не печатает акт.",
        subject="Не печатается акт",
    )  # fmt: skip
    assert (str(result.action), result.ticket, result.reason) == (
        "new_ticket", 1, "registered_on_behalf",
    )  # fmt: skip
    detail = ticket(app)
    assert (detail["channel"], detail["requester"]["email"], detail["assignee"]) == (
        "phone", "buh@firm.ru", "ivanov@sis.ru",
    )  # fmt: skip
    [request] = detail["messages"][:1]
    assert (request["kind"], request["text"]) == (
        "on_behalf", "Звонила бухгалтер: Cubisio 3.2.1 не печатает акт.",
    )  # fmt: skip
    [ack] = [r for r in client_outbox(app) if r.purpose == "acknowledgement"]
    assert ack.recipient == "buh@firm.ru"
    assert "[SIS #1]" in decoded(email.message_from_bytes(ack.raw)["Subject"])
    told = [n for n in notices(app) if n.purpose == "ticket_notice"]
    assert [n.recipient for n in told] == ["petrova@sis.ru"]  # not the engineer who registered
    assert "Канал: телефон, зарегистрировал(а) Иван Иванов" in body_of(told[0])
    body = confirmation(app)
    assert "✔ #new buh@firm.ru phone — зарегистрировано обращение [SIS #1]" in body
    assert "✔ #take" in body


@pytest.mark.parametrize(
    ("argument", "says"),
    [("", "не хватает аргумента"), ("buh@firm.ru pigeon", "неизвестное значение"),
     ("info@sis.ru", "адрес самой поддержки")],
)  # fmt: skip
def test_new_refusals_open_nothing(app, argument, says):
    result = engineer_writes(app, f"#new {argument}\n\nТекст.", subject="Звонок")
    assert str(result.action) == "ignored"
    assert says in confirmation(app)
    with app.sessions() as session:
        assert session.scalar(select(Ticket.id)) is None


def test_help(app):
    client_writes(app)
    engineer_writes(app, "#help")
    body = confirmation(app)
    assert "#request version|remote|logs|dump" in body
    assert "not_reproducible" in body


def test_many_commands_in_one_mail_each_confirmed(app):
    client_writes(app)
    engineer_writes(app, "#take\n#priority high\n#status waiting\n\nСмотрим.")
    body = confirmation(app)
    assert [line[0] for line in body.splitlines() if line.startswith(("✔", "✘"))] == ["✔"] * 3
    detail = ticket(app)
    assert (detail["assignee"], detail["criticality"]) == ("ivanov@sis.ru", "high")
    assert "Ваш ответ отправлен: sidorov@stroymontazh.ru." in body


# --- who may command --------------------------------------------------------------------------


def test_spoofed_engineer_is_not_obeyed(app):
    client_writes(app)
    result = engineer_writes(app, "#close solved\n\nЗакрываем.", proven=False)
    assert str(result.action) == "new_ticket"  # a stranger's mail, in a ticket of its own
    assert db_ticket(app, 1).status == "new"
    with app.sessions() as session:
        reasons = session.scalars(select(Event.reason).where(Event.kind == "security")).all()
    assert "commands_refused" in reasons
    assert not [r for r in outbox(app) if r.purpose in ("command_result", "closing")]


def test_a_client_writing_hash_lines_commands_nothing(app):
    client_writes(app)
    ingest(app, build_mail(
        subject="Re: [SIS #1] x", body="#close solved\nэто просто текст",
        message_id="<req-2@stroymontazh.ru>",
    ))  # fmt: skip
    assert db_ticket(app).status == "new"
    with app.sessions() as session:
        texts = session.scalars(select(Message.text).where(Message.direction == "in")).all()
    assert "#close solved\nэто просто текст" in texts


def test_engineers_mail_in_english_when_the_desk_is_english(make_app):
    app = make_app(TRUST + '[tickets]\nlanguage = "en"\n' + PETROVA)
    client_writes(app, sender="John Smith <john@acme-corp.com>", subject="Report fails",
                  body="Hello, Cubisio 3.2.1 crashes when I open a report.")  # fmt: skip
    notice = body_of(notices(app)[0])
    assert "Criticality: high · Status: new · Assignee: none" in notice  # "Report fails"
    assert "First response due: 03.03.2026 17:00 MSK" in notice
    engineer_writes(app, "#take\n#request logs\n\nPlease send the logs.", subject="Re: [SIS #1] x")
    body = confirmation(app)
    assert "✔ #take — the ticket is assigned to you" in body
    assert "✔ #request logs — asked the client for: logs; status is waiting" in body
    [answer] = to_client(app)
    text = body_of(answer)
    assert text.startswith("Please send the logs.")
    assert "* Logs." in text
    assert "Request [SIS #1]: Report fails" in text
