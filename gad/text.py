"""How GAD reads people's text: what counts as blank, the one spelling kept for an e-mail, a DNI and a unidad, and
what a search box's text finds.

The request schemas (gad/schemas/common.py), the services that look people up (login, the usuarios search) and the
importer all judge text by these rules, so a value means the same thing wherever it arrives.
"""

import unicodedata

# What a screen shows as nothing: whatever Unicode files under control, format or separator (categories C*, Z*:
# spaces, zero-width space and joiners, direction marks and overrides, BOM, soft hyphen, invisible operators, tag
# characters), and the marks and letters that draw nothing on their own: the combining grapheme joiner, variation
# selectors, Mongolian free variation selectors, Hangul fillers, the braille blank. Decided by property, not by a
# list of characters people have pasted so far.
_DRAWN_BLANK = frozenset("\u034f\u180b\u180c\u180d\u180f\u115f\u1160\u3164\uffa0\u2800")


def is_blank(character: str) -> bool:
    # A lone surrogate (Cs) is no character at all, not a blank one: stripped from the ends, a motivo of only that
    # was stored as none, where one inside a text is refused (422 string_unicode). Kept, it is refused everywhere.
    category = unicodedata.category(character)
    return (
        character in _DRAWN_BLANK
        or (category[0] in "CZ" and category != "Cs")
        or "\ufe00" <= character <= "\ufe0f"
        or "\U000e0100" <= character <= "\U000e01ef"
    )


def strip_blank(value: str) -> str:
    """``value`` without blank characters at either end (inside, a zero-width joiner is part of an emoji)."""
    start, end = 0, len(value)
    while start < end and is_blank(value[start]):
        start += 1
    while end > start and is_blank(value[end - 1]):
        end -= 1
    return value[start:end]


def canonical_unidad(value: str) -> str:
    """A unidad as GAD keeps and compares it: composed (NFC: an accent typed as a combining mark is the letter it
    looks like) and its words one space apart. An alert to «Móvil 101» reached nobody written «Mo\u0301vil  101»,
    though both read the same. Capitals are kept: the command centre writes its unidades as it names them."""
    words = (strip_blank(word) for word in unicodedata.normalize("NFC", value).split())
    return " ".join(word for word in words if word)


def visible_length(value: str) -> int:
    """How many of ``value``'s characters a screen shows."""
    return sum(1 for character in value if not is_blank(character))


def canonical_email(value: str) -> str:
    """An e-mail as GAD keeps and looks it up: one spelling per address. NFKC makes full-width letters and a
    letter with a combining accent the characters they look like; identity is case-insensitive."""
    return strip_blank(unicodedata.normalize("NFKC", value)).lower()


def canonical_dni(value: str) -> str:
    """A DNI/NIE as GAD keeps and compares it: its letters and digits, in capitals. The same document written
    12345678-z, 12.345.678 Z, with a Unicode dash or an invisible character, or in full-width digits is one
    person, not a second account."""
    return "".join(character for character in unicodedata.normalize("NFKC", value).upper() if character.isalnum())


def dni_spelled(text: str) -> str | None:
    """The DNI that a search text spells when it is one written with separators (letters and digits, with only
    dashes, dots, slashes and blanks between them), in its stored form; None for any other text, which is then
    searched as typed (a ``%`` in it is a character to find, never dropped)."""
    text = unicodedata.normalize("NFKC", text)
    if not all(c.isalnum() or c in "./" or unicodedata.category(c) == "Pd" or is_blank(c) for c in text):
        return None
    return canonical_dni(text) or None


# Letters a search treats as one whatever their accent or case: an operator types «paginacion» or «NUNEZ» on a phone
# and the row says «Paginación», «Núñez». Spanish, and the other languages of the peninsula and of visitors' names.
_SAME_LETTER = ("aáàâäãå", "eéèêë", "iíìîï", "oóòôöõ", "uúùûü", "nñ", "cç", "yýÿ")
# After such a letter, any accents stored as marks of their own (text typed decomposed: «Mo\u0301vil»).
_COMBINING_MARKS = "[\u0300-\u036f]*"
_LETTER_CLASSES = {character: f"[{letters}{letters.upper()}]{_COMBINING_MARKS}" for letters in _SAME_LETTER for character in letters + letters.upper()}


def search_regex(text: str) -> str:
    """The regular expression (PostgreSQL's case-insensitive ``~*``) finding a search box's text: as typed, its
    letters with or without their accents and in either case, every other character itself (``.``, ``%``, ``_``,
    ``*`` are characters to find, never operators). A class per letter, not a function over every row: folding
    200,000 tareas with ``translate()`` made a search six times slower, where the pattern costs what ``ILIKE`` did
    (and ``unaccent`` is an extension a database may not have)."""
    parts = []
    for character in unicodedata.normalize("NFC", strip_blank(text)):
        if character in _LETTER_CLASSES:
            parts.append(_LETTER_CLASSES[character])
        elif character.isalnum():
            parts.append(character)
        else:  # in PostgreSQL's advanced expressions, a backslash before any other character stands for that character
            parts.append("\\" + character)
    return "".join(parts)
