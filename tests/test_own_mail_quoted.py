"""A client pastes our own mail back without '>' marks (issue 14): what we sent is known, so
the stored text is the client's own, and our checklist words do not count as theirs."""

from __future__ import annotations

import email

from sqlalchemy import select

from parsers.quotes import cut_own_mail
from storage.models import Message
from tests.mailbuilder import build_mail
from tests.test_pipeline import client_outbox, ingest

OURS = (
    "Ваше обращение зарегистрировано в службе технической поддержки ООО «СИС» под номером "
    "[SIS #1].\nЧтобы ваши следующие письма попали в это же обращение, отвечайте на это письмо."
)


def test_cut_at_the_line_that_begins_our_words():
    text = f"Лог прикладываю.\n\nОт: SIS Support <info@sis.ru>\nДата: вчера\n\n{OURS}"
    assert cut_own_mail(text, [OURS]) == "Лог прикладываю."


def test_rewrapped_paste_is_still_ours():
    rewrapped = OURS.replace(" службе ", "\nслужбе ").replace("\n", " \n")
    text = f"Спасибо, жду.\n-----\n{rewrapped}"
    assert cut_own_mail(text, [OURS]) == "Спасибо, жду."


def test_our_words_inside_a_sentence_are_not_a_paste():
    text = f"Вы написали: «{OURS.splitlines()[0]}» — но номер не пришёл."
    assert cut_own_mail(text, [OURS]) == text


def test_only_our_words_keeps_the_text():
    assert cut_own_mail(OURS, [OURS]) == OURS


def test_nothing_known_changes_nothing():
    assert cut_own_mail("Текст.\nЕщё текст.", []) == "Текст.\nЕщё текст."


def test_client_reply_with_our_acknowledgement_pasted_unquoted(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>", body="Отчёт не открывается."))
    [ack] = client_outbox(app)
    ack_mail = email.message_from_bytes(ack.raw)
    part = next(p for p in ack_mail.walk() if p.get_content_type() == "text/plain")
    ack_text = part.get_payload(decode=True).decode()
    reply = build_mail(
        subject="Re: [SIS #1] Не открывается отчёт", message_id="<req-2@stroymontazh.ru>",
        in_reply_to="<req-1@stroymontazh.ru>",
        body=f"Версия 3.2.1, Windows 10.\n\n{ack_text}",
    )  # fmt: skip
    result = ingest(app, reply)
    assert result.ticket == 1
    with app.sessions() as session:
        texts = session.scalars(
            select(Message.text).where(Message.direction == "in").order_by(Message.id)
        ).all()
    assert texts[-1] == "Версия 3.2.1, Windows 10."
