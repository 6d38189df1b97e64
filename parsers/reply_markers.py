"""The words mail programs write around quoted history, in the ten languages of the desk.

Data, not logic: `parsers.quotes` compiles these into its marker tests. Each list holds the
wording of real clients (Gmail, Outlook desktop and web, Apple Mail, Thunderbird, Yandex,
Mail.ru, The Bat!) in Russian, Ukrainian, English, German, French, Spanish, Portuguese,
Italian, Polish and Dutch, as collected for tests/fixtures/replies (their sources are named
there and in docs/architecture.md). All entries are lower-case; spaces match any run of
spaces.
"""

from __future__ import annotations

# Verbs of an attribution line ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :").
WROTE = (
    "wrote", "writes", "you wrote", "schrieb", "schreef", "geschreven", "a écrit", "écrit",
    "avez écrit", "można przeczytać", "escribió", "escribio", "escreveu", "ha scritto",
    "hai scritto", "scritto",
    "napisał(a)", "napisał", "napisała", "pisze", "написал(а)", "написал(-а)", "написала",
    "написал", "пишет", "писали", "написав(ла)", "написав", "пише", "писали",
    "skrev", "kirjoitti", "napsal(a)",
)  # fmt: skip

# First words of an attribution (a date or a time may start it too).
ATTRIBUTION_OPENERS = (
    "on", "am", "le", "el", "em", "il", "il giorno", "op", "w dniu", "dnia", "den", "dne",
    "вы писали", "you wrote", "no dia",
)  # fmt: skip

WEEKDAYS = (
    # en
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    # de
    "montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag",
    "mo", "di", "mi", "do", "fr", "sa", "so",
    # fr
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
    "lun", "mar", "mer", "jeu", "ven", "sam", "dim",
    # es
    "lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo",
    "mié", "jue", "vie", "sáb", "dom",
    # pt
    "segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
    "seg", "ter", "qua", "qui", "sex",
    # it
    "lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "gio", "sab",
    # pl
    "poniedziałek", "wtorek", "środa", "czwartek", "piątek", "sobota", "niedziela",
    "pon", "wt", "śr", "czw", "pt", "sob", "niedz", "nd",
    # nl
    "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag",
    "ma", "wo", "vr", "za", "zo",
    # ru, uk
    "понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье",
    "понеділок", "вівторок", "середа", "четвер", "пʼятниця", "п'ятниця", "субота", "неділя",
    "пн", "вт", "ср", "чт", "пт", "сб", "вс", "нд",
)  # fmt: skip

# Outlook's header block ("From:/Sent:/To:/Subject:") and forwarded headers, by role.
HEADER_LABELS = {
    "from": (
        "from", "von", "de", "da", "od", "van", "від", "от", "от кого", "від кого", "fra",
        "från", "nadawca", "remetente", "mittente", "expéditeur", "absender",
    ),
    "date": (
        "sent", "date", "gesendet", "datum", "envoyé", "enviado", "enviado el", "enviada em",
        "enviada", "fecha", "data", "inviato", "wysłano", "verzonden", "verstuurd", "надіслано",
        "дата", "отправлено", "sendt", "skickat", "data wysłania",
    ),
    "to": (
        "to", "an", "à", "a", "para", "do", "aan", "кому", "til", "till", "adresat",
        "destinatario", "destinataire", "odbiorca",
    ),
    "cc": ("cc", "kopie", "copie", "copia", "kopia", "копия", "копія", "dw", "bcc"),
    "subject": (
        "subject", "betreff", "objet", "asunto", "assunto", "oggetto", "temat", "onderwerp",
        "тема", "emne", "ämne", "sujet",
    ),
}  # fmt: skip

# Banner lines between dashes: "-----Original Message-----", "---------- Forwarded message".
BANNER_WORDS = (
    "original message", "исходное сообщение", "forwarded message", "пересылаемое сообщение",
    "перенаправленное сообщение", "пересланное сообщение", "ursprüngliche nachricht",
    "weitergeleitete nachricht", "message d'origine", "message d’origine", "message original",
    "message transféré", "mensaje original", "mensaje reenviado", "mensagem original",
    "mensagem encaminhada", "mensagem reencaminhada", "messaggio originale",
    "messaggio inoltrato", "wiadomość oryginalna", "oryginalna wiadomość",
    "przekazana wiadomość", "treść przekazanej wiadomości", "wiadomość przekazana",
    "oorspronkelijk bericht", "origineel bericht", "doorgestuurd bericht",
    "початкове повідомлення", "вихідне повідомлення", "оригінальне повідомлення",
    "переслане повідомлення", "пересланий лист", "пересилаємий лист",
    "конец пересылаемого сообщения", "end of forwarded message",
)  # fmt: skip

# Apple Mail and others start a forward with a line of its own ending in ':'.
FORWARD_OPENERS = (
    "begin forwarded message", "начало переадресованного сообщения",
    "anfang der weitergeleiteten nachricht", "début du message réexpédié",
    "début du message transféré", "inicio del mensaje reenviado",
    "início da mensagem reencaminhada", "início da mensagem encaminhada",
    "inizio messaggio inoltrato", "początek przekazywanej wiadomości",
    "begin doorgestuurd bericht", "початок листа, що пересилається",
    "початок пересланого повідомлення",
)  # fmt: skip

# Sign-offs: part of the message (issue 14), with the name under them; what follows the
# name (title, company, phones) is the signature.
SIGN_OFFS = (
    # ru, uk
    "с уважением", "с наилучшими пожеланиями", "всего доброго", "всего хорошего",
    "с уважением и наилучшими пожеланиями", "с уважением и благодарностью", "искренне ваш",
    "искренне ваша", "з повагою", "з найкращими побажаннями", "всього найкращого",
    "всього доброго",
    # en
    "best regards", "kind regards", "warm regards", "regards", "best wishes", "sincerely",
    "yours sincerely", "yours faithfully", "cheers", "best", "all the best", "many thanks",
    "thanks", "thank you", "thanks in advance", "thanks and regards", "thanks & regards",
    "with regards", "warmest regards", "best wishes", "take care", "respectfully",
    "with kind regards", "with best regards", "many thanks and kind regards",
    # de
    "mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße",
    "freundliche grüsse", "viele grüße", "viele grüsse", "beste grüße", "beste grüsse",
    "liebe grüße", "liebe grüsse", "herzliche grüße", "schöne grüße", "gruß", "grüße", "gruss",
    "mfg", "lg", "vg", "danke", "vielen dank", "danke und viele grüße", "danke und gruß",
    "herzliche grüsse", "schöne grüsse", "besten dank", "mit besten grüßen",
    "mit besten grüssen", "mit freundlichem gruß", "mit freundlichem gruss", "grüße aus",
    # fr
    "cordialement", "bien cordialement", "très cordialement", "salutations",
    "bien à vous", "meilleures salutations", "sincères salutations", "merci",
    "merci d'avance", "merci pour votre aide", "merci beaucoup", "bonne journée",
    "bonne journee", "à bientôt", "amicalement", "bien à toi", "bonne soirée", "cdlt",
    "salutations distinguées", "merci et bonne journée",
    # es
    "saludos", "un saludo", "saludos cordiales", "atentamente", "cordialmente", "gracias",
    "muchas gracias", "gracias de antemano", "un cordial saludo", "quedo atento",
    "quedo atenta", "quedo a la espera", "reciba un cordial saludo", "un abrazo",
    "saludos y gracias", "gracias y saludos",
    # pt
    "atenciosamente", "cumprimentos", "melhores cumprimentos", "abraços", "abraço",
    "obrigado", "obrigada", "muito obrigado", "muito obrigada", "att", "grato", "grata",
    "com os melhores cumprimentos", "com os meus cumprimentos", "com cumprimentos",
    "saudações", "um abraço", "forte abraço", "atte",
    # it
    "cordiali saluti", "distinti saluti", "saluti", "un saluto", "grazie", "grazie mille",
    "grazie ancora", "buona giornata", "a presto", "cari saluti", "saluti cordiali",
    "un caro saluto", "grazie e cordiali saluti", "grazie e saluti",
    # pl
    "pozdrawiam", "z poważaniem", "pozdrawiam serdecznie", "serdecznie pozdrawiam",
    "z wyrazami szacunku", "dziękuję", "dzięki", "dziękuję bardzo", "z góry dziękuję",
    "pozdrowienia", "łączę pozdrowienia", "z pozdrowieniami", "dziękuję i pozdrawiam",
    # nl
    "met vriendelijke groet", "met vriendelijke groeten", "vriendelijke groet",
    "hartelijke groet", "hartelijke groeten", "groeten", "groet", "mvg", "bedankt",
    "dank je wel", "dank u wel", "alvast bedankt", "met hartelijke groet", "groetjes",
    "met vriendelijke groet en dank",
    # ru, uk thanks
    "спасибо", "заранее спасибо", "спасибо заранее", "благодарю", "большое спасибо",
    "спасибо большое", "дякую", "заздалегідь дякую", "щиро дякую", "дуже дякую",
)  # fmt: skip

# "Sent from my iPhone" and its kin: a send/get word, then a device or a mail app.
FOOTER_OPENERS = (
    "sent from", "sent with", "sent via", "get outlook", "download outlook", "obtenir outlook",
    "ottieni outlook", "holen sie sich outlook", "outlook für",
    "von meinem", "gesendet von", "gesendet mit", "envoyé de", "envoyé depuis",
    "envoyé avec", "télécharger outlook", "enviado desde", "enviado con", "obtener outlook",
    "descargar outlook", "enviado do", "enviado de", "obter o outlook", "obter outlook",
    "baixe o outlook", "inviato da", "inviato con", "scarica outlook", "wysłane z",
    "wysłano z", "pobierz outlook", "verzonden vanaf", "verstuurd vanaf", "verzonden met",
    "outlook voor", "надіслано з", "надіслано із", "отправлено с", "отправлено со",
    "отправлено из", "отправлено через", "получить outlook", "скачать outlook",
    "завантажити outlook",
)  # fmt: skip
FOOTER_DEVICES = (
    "iphone", "ipad", "android", "outlook", "mobile", "galaxy", "samsung", "blackberry",
    "huawei", "xiaomi", "device", "tablet", "phone", "yahoo", "mail", "windows", "móvil",
    "movil", "celular", "telemóvel", "cellulare", "telefon", "handy", "smartphone",
    "мобильн", "мобільн", "яндекс", "почт", "пошт", "приложени", "устройств", "смартфон",
    "телефон", "планшет", "додат", "пристр",
)  # fmt: skip
# Mobile Outlook writes "Von meinem iPhone gesendet": the device first, the verb last.
FOOTER_CLOSERS = ("gesendet", "verzonden", "verstuurd", "wysłane", "inviato", "envoyé")

# A legal notice under a signature may be one long line; these words say it is one.
DISCLAIMER_WORDS = (
    "confidential", "confidentiality", "intended recipient", "disclaimer", "addressee",
    "privileged", "конфиденц", "адресат", "конфіденц", "vertraulich", "empfänger",
    "haftungsausschluss", "confidentiel", "destinataire", "confidencial", "destinatario",
    "confidenziale", "riservat", "destinatário", "poufn", "adresat", "vertrouwelijk",
    "geadresseerde",
)  # fmt: skip
