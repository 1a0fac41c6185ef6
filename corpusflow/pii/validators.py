"""Validators for Chinese personal identifiers: pure functions on strings.

Each takes the candidate with separators already removed (digits, and ``X`` for
an ID check character) and says whether it is a plausible real identifier.
They are what separates an ID or bank card number from a stock code, an order
number or an 18-digit number with the wrong checksum.
"""

from __future__ import annotations

import datetime

# GB/T 2260 province-level codes (the first two digits of a resident ID):
# 11-15 north, 21-23 north-east, 31-37 east, 41-46 central-south,
# 50-54 south-west, 61-65 north-west, 71 Taiwan, 81 Hong Kong, 82 Macao,
# 83 residence permits of Taiwan residents (since 2018).
PROVINCE_CODES: frozenset[str] = frozenset(
    [str(c) for c in range(11, 16)] + [str(c) for c in range(21, 24)]
    + [str(c) for c in range(31, 38)] + [str(c) for c in range(41, 47)]
    + [str(c) for c in range(50, 55)] + [str(c) for c in range(61, 66)]
    + ["71", "81", "82", "83"])

# GB 11643-1999: weights of the 17 body digits and the check character for
# (sum mod 11).
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# Birth years a living person's ID can carry. Fixed bounds (not "today") so a
# document is redacted the same way whenever the pipeline runs.
MIN_BIRTH_YEAR = 1900
MAX_BIRTH_YEAR = 2030


def id_check_char(body17: str) -> str:
    """The GB 11643 check character of 17 body digits."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(body17, _ID_WEIGHTS)) % 11]


def plausible_date(year: int, month: int, day: int) -> bool:
    """A real calendar date with a year in [MIN_BIRTH_YEAR, MAX_BIRTH_YEAR]."""
    if not MIN_BIRTH_YEAR <= year <= MAX_BIRTH_YEAR:
        return False
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def valid_id18(s: str) -> bool:
    """An 18-character resident ID: known province, real birth date, right checksum."""
    if len(s) != 18 or not s[:17].isdigit() or not s[:17].isascii():
        return False
    last = s[17].upper()
    if not (last.isdigit() and last.isascii()) and last != "X":
        return False
    if s[:2] not in PROVINCE_CODES:
        return False
    if not plausible_date(int(s[6:10]), int(s[10:12]), int(s[12:14])):
        return False
    return id_check_char(s[:17]) == last


def valid_id15(s: str) -> bool:
    """A 15-digit ID (issued before 1999): known province, real 19YYMMDD date, no checksum."""
    if len(s) != 15 or not s.isdigit() or not s.isascii():
        return False
    if s[:2] not in PROVINCE_CODES:
        return False
    return plausible_date(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def plausible_card_prefix(digits: str) -> bool:
    """Issuer prefixes of the cards Chinese banks issue: UnionPay 62, 60 (older
    domestic BINs such as 601382) and 95 (19-digit domestic debit cards such as
    9558), Visa 4, Mastercard 51-55 and 2221-2720, JCB 3528-3589, Discover 65."""
    if len(digits) < 4:
        return False
    p2 = int(digits[:2])
    p4 = int(digits[:4])
    return (p2 in (62, 60, 65, 95) or digits[0] == "4" or 51 <= p2 <= 55
            or 2221 <= p4 <= 2720 or 3528 <= p4 <= 3589)


def valid_bank_card(digits: str) -> bool:
    """16-19 digits, a plausible issuer prefix and a valid Luhn digit."""
    return 16 <= len(digits) <= 19 and plausible_card_prefix(digits) and luhn_valid(digits)


def valid_mobile(digits: str) -> bool:
    """A mainland mobile number: 11 digits, ``1[3-9]`` then 9 digits."""
    return (len(digits) == 11 and digits.isdigit() and digits.isascii() and digits[0] == "1"
            and digits[1] in "3456789")


def valid_ipv4(s: str) -> bool:
    """Four dotted decimal octets 0-255 without leading zeros."""
    parts = s.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or not p.isascii() or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
            return False
        if int(p) > 255:
            return False
    return True


def valid_ipv6(s: str) -> bool:
    """An IPv6 address with at least three non-empty groups (so ``12:30:45``-like
    times and ``a::b`` scopes are not taken for addresses)."""
    import ipaddress
    if s.count(":") < 2 or sum(1 for g in s.split(":") if g) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True
