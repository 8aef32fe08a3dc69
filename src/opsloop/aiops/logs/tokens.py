"""Masking and tokenising: the one rule set every log source shares.

A line is masked before it is split: every *word* (a run of characters between
whitespace and the punctuation in ``_DELIMS``) that holds a digit (with the unit after
it, if any: ``4.0 KB``, ``20 ms``), every absolute path (Unix or Windows), and every
month or weekday name becomes ``<*>``. That covers numbers, hex, IPs and
ports, UUIDs, dates, times, PIDs in ``sshd[42]:`` and ids such as ``blk_-42`` or
``node-17``, whether they sit in a header or in the message, without knowing the source.
Punctuation around a word survives (``uid=<*>``, ``[<*>]``), so the shape stays in the
template.

The masked line is split on whitespace, except that a bracketed group of up to eight
words (``[IPC Server handler <*> on <*>]``, a thread name) stays one token, so that
lines differing only in such a group have the same number of tokens. Runs of ``<*>``
tokens collapse into one, so variable-length lists of numbers (``IRQs 3 4 5 7``) and
headers made of several numeric fields do not split a template by their length.

Everything here is a compiled regular expression applied to the whole line once: the
work per line happens in C.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"

# Punctuation that ends a word: a word is masked on its own, keeping what surrounds it.
_DELIMS = r"\s\[\](){},;=\"'<>|"
_UNITS = "[KMGTP]i?B|B|[mun]?s|sec|secs|min|mins"
_MONTHS_DAYS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Mon|Tue|Wed|Thu|Fri|Sat|Sun"

MASK = re.compile(
    # Start only at a word's start: a failed attempt costs one character, not a rescan.
    rf"(?<![^{_DELIMS}])"
    rf"(?:[^{_DELIMS}\d]*\d[^{_DELIMS}]*"  # a word with a digit in it,
    rf"(?:[ \t]+(?:{_UNITS})(?![^{_DELIMS}]))?"  # and the unit after it (4.0 KB, 20 ms)
    rf"|/[^{_DELIMS}]*/[^{_DELIMS}]*"  # an absolute path of two or more parts
    rf"|[A-Za-z]:\\[^{_DELIMS}]*"  # a Windows path
    rf"|(?:{_MONTHS_DAYS})(?![^{_DELIMS}]))"  # a month or weekday name
)

TOKEN = re.compile(r"[^\s\[]*\[[^\[\]\s]*(?:\s+[^\[\]\s]*){0,7}\]\S*|\S+")
# A token of nothing but parameters and punctuation (``<*>,<*>`` from ``18:01:48,963``).
_ALL_WILD = re.compile(r"(?:<\*>|[^\w\[\]()])+")


def mask(line: str) -> str:
    """The line with its variable-looking words replaced by ``<*>``.

    >>> mask("Connection from 10.0.0.1:22 closed after 3s")
    'Connection from <*> closed after <*>'
    """
    return MASK.sub(WILDCARD, line)


def tokens(masked: str) -> list[str]:
    """Split a masked line into tokens, gluing short bracketed groups and collapsing
    runs of ``<*>``.

    >>> tokens("<*> <*> INFO [IPC Server handler <*> on <*>] done")
    ['<*>', 'INFO', '[IPC Server handler <*> on <*>]', 'done']
    """
    out: list[str] = []
    prev_wild = False
    for tok in TOKEN.findall(masked):
        if tok != WILDCARD and WILDCARD in tok and _ALL_WILD.fullmatch(tok):
            tok = WILDCARD
        if tok == WILDCARD:
            if prev_wild:
                continue
            prev_wild = True
        else:
            prev_wild = False
        out.append(tok)
    return out


def raw_tokens(line: str) -> list[list[str]]:
    """Tokens of the unmasked line, aligned with ``tokens(mask(line))``: each entry holds
    the raw tokens that one masked token stands for (several for a collapsed run)."""
    masked = MASK.sub(WILDCARD, line)
    raws = TOKEN.findall(line)
    masks = TOKEN.findall(masked)
    if len(raws) != len(masks):  # cannot happen (masking keeps whitespace and brackets)
        return [[t] for t in raws]
    out: list[list[str]] = []
    prev_wild = False
    for raw, tok in zip(raws, masks, strict=True):
        if tok != WILDCARD and WILDCARD in tok and _ALL_WILD.fullmatch(tok):
            tok = WILDCARD
        if tok == WILDCARD:
            if prev_wild:
                out[-1].append(raw)
                continue
            prev_wild = True
        else:
            prev_wild = False
        out.append([raw])
    return out
