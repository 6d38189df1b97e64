"""Undeclared and mislabelled 8-bit text: maild's reading against charset-normalizer.

    python bench/charsets.py

A table of Russian, Ukrainian and Western texts (subjects of 2-4 words and bodies of a few
sentences), each encoded in the tables real mail uses, decoded (a) without a label and
(b) under the wrong sibling label (windows-1251 sent as koi8-r and the reverse). Prints the
share read right and the time per call (median of 5 runs). charset-normalizer is measured
when installed (it is, as a dependency of requests).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parsers.charsets import decode_bytes

RUSSIAN = (
    "Ошибка при запуске", "Не печатается накладная", "Счёт на продление лицензии",
    "Re: Сервер лицензий недоступен", "Добрый день! Программа Cubisio не запускается после "
    "обновления, в журнале ошибка доступа к базе. Прошу помочь.",
    "Здравствуйте. Отчёт по складу формируется пустым, хотя остатки есть. Версия 4.2.",
)  # fmt: skip
UKRAINIAN = (
    "Помилка ліцензії",
    "Доброго дня! Програма не запускається після оновлення, їх журнал є у вкладенні.",
)
WESTERN = (
    ("Grüße aus München, die Lizenz läuft ab", "cp1252"),
    ("Le serveur ne démarre plus après la mise à jour, voilà le journal.", "cp1252"),
    ("El informe está vacío después de la actualización, ¿qué hago?", "cp1252"),
)
CASES: list[tuple[str, bytes, str | None]] = []
for text in RUSSIAN:
    for codec in ("cp1251", "koi8-r", "cp866", "utf-8"):
        CASES.append((text, text.encode(codec), None))
    CASES.append((text, text.encode("cp1251"), "koi8-r"))
    CASES.append((text, text.encode("koi8-r"), "windows-1251"))
for text in UKRAINIAN:
    for codec in ("cp1251", "koi8-u", "utf-8"):
        CASES.append((text, text.encode(codec), None))
for text, codec in WESTERN:
    CASES.append((text, text.encode(codec), None))


def maild(data: bytes, label: str | None) -> str:
    return decode_bytes(data, label)[0]


def normalizer(data: bytes, _label: str | None) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()  # it takes no label: detection only
    return str(best) if best is not None else ""


def measure(name: str, decode) -> None:
    right = sum(decode(data, label) == text for text, data, label in CASES)
    wrong = [(text, label) for text, data, label in CASES if decode(data, label) != text]
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _, data, label in CASES:
            decode(data, label)
        runs.append((time.perf_counter() - started) / len(CASES) * 1e6)
    print(f"{name:20} {right}/{len(CASES)} right   {statistics.median(runs):8.1f} µs per text")
    for text, label in wrong[:6]:
        print(f"    wrong: {text[:40]!r} (label {label})")


def main() -> None:
    print(f"{len(CASES)} texts: undeclared, and windows-1251/koi8-r under each other's label")
    measure("maild", maild)
    try:
        import charset_normalizer  # noqa: F401
    except ImportError:
        print("charset-normalizer not installed, not measured")
    else:
        measure("charset-normalizer", normalizer)


if __name__ == "__main__":
    main()
