"""The streaming template miner.

One line at a time:

1. **Key**: the line's UTF-8 bytes with every digit turned to ``0`` and runs of zeros
   shortened (``bytes.translate`` and three ``bytes.replace``: C loops, no regex). The
   key fixes what masking will make of the line, so a line whose numbers changed (the
   common case: times, ids, sizes, addresses) finds its template with one dict lookup.
2. **Mask** a key not seen before (one compiled regex, see ``tokens``): words with
   digits (and their unit), paths, month and weekday names become ``<*>``; a second
   dict maps the masked line to its template.
3. **Place** a masked line not seen before: tokenise it and compare it with the
   templates of the same token count. Similarity is the share of a template's constant
   tokens the line repeats at the same place, each token weighted by its inverse
   frequency over all templates (a token most templates hold, such as a header's
   level or host, says little about the event). Below ``similarity`` the line starts
   a template. Otherwise, where the two differ:

   * only where one side already holds a parameter (``rhost=<*>`` against
     ``rhost=example.org``), in a bracketed field (``[main]`` against
     ``[IPC Server handler <*> on <*>]``), or in tokens that at least
     ``header_share`` of all templates hold at that same place (a level, a thread, a
     component: header fields, learned rather than parsed): the template takes the
     line and those places become ``<*>``;
   * in one other word (``startup``/``shutdown``, ``root``/``alice``): the line gets a
     template of its own until that place has shown ``variable_after`` different words
     among the templates that agree everywhere else. Then they fuse into one, the
     oldest id surviving (``resolve`` maps the others). A user name is a variable; two
     or three words in one place are usually different events;
   * in two or more other words: the line gets a template of its own.

A template that becomes more general also takes in every template it now covers, so
each line has one template no matter the order in which variants appeared.

Headers need no format: their timestamps, PIDs and host ids are masked, and what
varies in them without digits is learned to vary.

Memory is bounded: one ``Template`` (its tokens and a count) per template, token
frequencies over templates, and two caches capped at ``MinerConfig.cache_size`` entries
each (dropped when full; they refill from the templates).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import log
from typing import Any, TypeVar

from opsloop.aiops.logs.tokens import MASK, WILDCARD, raw_tokens, tokens

_mask_sub = MASK.sub
_K = TypeVar("_K")
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")


@dataclass(frozen=True, slots=True)
class MinerConfig:
    """The miner's one configuration, shared by every log source (see the module's
    docstring for how each is used).

    ``similarity``: the weighted share of a template's constant tokens a new line must
    repeat (same place, same token count) to join it. ``header_share``: the share of
    templates that must hold a token at the same place for it to count as a header
    field. ``variable_after``: how many different words a place must show before it is
    a parameter. ``cache_size``: entries in each of the two line caches.
    """

    similarity: float = 0.5
    header_share: float = 0.03
    variable_after: int = 4
    cache_size: int = 1 << 17

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity,
            "header_share": self.header_share,
            "variable_after": self.variable_after,
            "cache_size": self.cache_size,
        }


def _decrement(counts: dict[_K, int], key: _K) -> None:
    n = counts[key] - 1
    if n > 0:
        counts[key] = n
    else:
        del counts[key]


def _within(tokens: list[str], general: list[str]) -> bool:
    """Whether a template with these tokens is covered by ``general`` (equal wherever
    ``general`` is not ``<*>``)."""
    return all(g in (t, WILDCARD) for g, t in zip(general, tokens, strict=True))


class Template:
    """A template: its id, tokens (``<*>`` for a parameter) and how many lines it matched."""

    __slots__ = ("_counted", "_text", "count", "id", "tokens")

    def __init__(self, id: int, tokens: list[str], count: int = 0) -> None:
        self.id = id
        self.tokens = tokens
        self.count = count
        self._text: str | None = None
        # The tokens this template counts in the miner's document frequencies.
        self._counted: set[str] = set()

    @property
    def template(self) -> str:
        """The template as text, e.g. ``Connection from <*> closed``."""
        if self._text is None:
            self._text = " ".join(self.tokens)
        return self._text

    def __repr__(self) -> str:
        return f"Template(id={self.id}, template={self.template!r}, count={self.count})"


@dataclass(frozen=True, slots=True)
class Parsed:
    """One parsed line: its template's id and text (as of this line) and its parameters."""

    template_id: int
    template: str
    parameters: list[str] = field(default_factory=list)


class TemplateMiner:
    """Turns log lines into templates, one line at a time, learning as it goes.

    >>> m = TemplateMiner()
    >>> m.add("session opened for user root by (uid=0)").template
    'session opened for user root by (uid=<*>)'
    >>> m.add("session opened for user alice by (uid=1000)").template  # 2 words: 2 events?
    'session opened for user alice by (uid=<*>)'
    >>> for user in ["bob", "carol"]:
    ...     t = m.add(f"session opened for user {user} by (uid=1001)")
    >>> t.template, t.id, m.resolve(2)  # 4 words in one place: a variable
    ('session opened for user <*> by (uid=<*>)', 1, 1)
    >>> m.parse("session opened for user dave by (uid=1002)").parameters
    ['dave', '1002']
    """

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._templates: dict[int, Template] = {}
        self._by_len: dict[int, list[Template]] = {}
        # Two caches in front of the templates. ``_keys``: the line's UTF-8 bytes with
        # every digit run shortened to one to three zeros (three C calls, no regex),
        # which fixes the masked line; ``_cache``: the masked line itself.
        self._keys: dict[bytes, Template] = {}
        self._cache: dict[str, Template] = {}
        self._next_id = 1
        self._param_res: dict[str, re.Pattern[str]] = {}
        self._df: dict[str, int] = {}  # constant token -> templates holding it
        # (place, token) -> templates that have held it there; it never decreases, so a
        # header field stays known as one after its templates have made it <*>.
        self._pdf: dict[tuple[int, str], int] = {}
        self._exact: dict[tuple[str, ...], Template] = {}
        self._alias: dict[int, int] = {}  # merged template id -> the id it went into
        # Bumped whenever a template is made, made more general or merged away: a
        # holder of the miner's saved state knows when to save it again.
        self.revision = 0

    # -- mining -----------------------------------------------------------------

    def add(self, line: str) -> Template:
        """File one line under its template (learning a new or more general one)."""
        key = (
            line.encode("utf-8", "surrogatepass")
            .translate(_ZERO_DIGITS)
            .replace(b"0000", b"0")
            .replace(b"00", b"0")
            .replace(b"00", b"0")
        )
        t = self._keys.get(key)
        if t is None:
            t = self._file_line(line, key)
        t.count += 1
        return t

    def add_many(self, lines: Iterable[str]) -> Iterator[Template]:
        """``add`` each line in turn, yielding its template (ids in input order)."""
        keys = self._keys
        zero = _ZERO_DIGITS
        for line in lines:
            key = (
                line.encode("utf-8", "surrogatepass")
                .translate(zero)
                .replace(b"0000", b"0")
                .replace(b"00", b"0")
                .replace(b"00", b"0")
            )
            t = keys.get(key)
            if t is None:
                t = self._file_line(line, key)
            t.count += 1
            yield t

    def parse(self, line: str) -> Parsed:
        """``add`` the line and return its template and parameters."""
        t = self.add(line)
        return Parsed(t.id, t.template, self.parameters(line, t))

    def match(self, line: str) -> Template | None:
        """The known template of a line (seen before, or the nearest at or above
        ``similarity``), without learning from it; ``None`` if there is none."""
        key = _mask_sub(WILDCARD, line)
        t = self._cache.get(key)
        if t is not None:
            return t
        toks = tokens(key)
        best, sim = self._best(toks)
        if best is None or sim < self.config.similarity:
            return None
        return best

    def _file_line(self, line: str, key: bytes) -> Template:
        masked = _mask_sub(WILDCARD, line)
        t = self._cache.get(masked)
        if t is None:
            t = self._file(masked)
        keys = self._keys
        if len(keys) >= self.config.cache_size:
            keys.clear()
        keys[key] = t
        return t

    def _file(self, masked: str) -> Template:
        t = self._place(tokens(masked))
        cache = self._cache
        if len(cache) >= self.config.cache_size:
            cache.clear()
        cache[masked] = t
        return t

    def _place(self, toks: list[str]) -> Template:
        """The template for a token list not seen before: an existing one, made more
        general if need be, or a new one."""
        known = self._exact.get(tuple(toks))
        if known is not None:
            return known
        cfg = self.config
        best, sim = self._best(toks)
        if best is None or sim < cfg.similarity:
            return self._new(toks)
        bt = best.tokens
        if bt == toks:
            return best
        general = [a if a == b else WILDCARD for a, b in zip(bt, toks, strict=True)]
        words = [
            i
            for i, (a, b) in enumerate(zip(bt, toks, strict=True))
            if a != b and not self._fits(a, b)
        ]
        pdf = self._pdf
        common = max(2.0, cfg.header_share * len(self._templates))
        # Words that many templates hold in the same place (a level, a thread, a
        # component in a header) vary like parameters: they do not make another event.
        words = [i for i in words if max(pdf.get((i, bt[i]), 0), pdf.get((i, toks[i]), 0)) < common]
        if not words:
            # What differs is header-like, or differs only where one side already
            # holds a parameter (``()`` against ``(<*>)``): the same event.
            return self._fuse(general)
        # Informative words differ. A variable (a user, a file) shows many values in
        # one place; a few values are different events (``startup``/``shutdown``).
        # Keep them apart until the place has shown ``variable_after`` values among the
        # templates that agree everywhere else.
        if len(words) == 1:
            # One place at a time: with two or more words apart the templates that
            # agree everywhere else are too many and too unlike to count values among.
            (i,) = words
            values = {s.tokens[i] for s in self._by_len[len(toks)] if _within(s.tokens, general)}
            values.add(toks[i])
            if WILDCARD in values or len(values) >= cfg.variable_after:
                return self._fuse(general)
        # Counted once in the token frequencies, with its siblings: it adds only the
        # words where it differs.
        return self._new(toks, counted={toks[j] for j in words})

    def _fits(self, a: str, b: str) -> bool:
        """Whether one token is the other with values for its ``<*>`` (``rhost=<*>`` and
        ``rhost=example.org``; ``(<*>)`` and ``()``)."""
        if a[:1] == b[:1] == "[" and a[-1:] == b[-1:] == "]":
            # A bracketed field (``[main]``, ``[IPC Server handler <*> on <*>]``): by
            # convention a thread or component, not the event.
            return True
        if WILDCARD in a:
            return self._param_re(a).fullmatch(b) is not None
        if WILDCARD in b:
            return self._param_re(b).fullmatch(a) is not None
        return False

    def _fuse(self, general: list[str]) -> Template:
        """Make the oldest template that ``general`` covers that general, and merge
        every other template it covers into it."""
        covered = sorted(
            (t for t in self._by_len[len(general)] if _within(t.tokens, general)),
            key=lambda t: t.id,
        )
        canon = covered[0]
        self._generalise(canon, general)
        gone = set()
        for m in covered[1:]:
            gone.add(m.id)
            canon.count += m.count
            self._drop(m)
            self._alias[m.id] = canon.id
        if gone:
            masked = self._cache
            for k, v in masked.items():
                if v.id in gone:
                    masked[k] = canon
            keys = self._keys
            for kb, v in keys.items():
                if v.id in gone:
                    keys[kb] = canon
        return canon

    def _drop(self, t: Template) -> None:
        self.revision += 1
        del self._templates[t.id]
        self._by_len[len(t.tokens)].remove(t)
        if self._exact.get(tuple(t.tokens)) is t:
            del self._exact[tuple(t.tokens)]
        self._uncount(t._counted)

    def resolve(self, template_id: int) -> int:
        """The id a template has now (templates merged into others keep pointing there)."""
        alias = self._alias
        while template_id in alias:
            template_id = alias[template_id]
        return template_id

    def _best(self, toks: list[str]) -> tuple[Template | None, float]:
        # A token's weight is its inverse document frequency over the templates: a token
        # that most templates hold (a header's level, host or constant field) says little
        # about which template a line belongs to; a rare one says much.
        best: Template | None = None
        best_sim = -1.0
        cands = self._by_len.get(len(toks))
        if not cands:
            return None, best_sim
        df = self._df
        n = len(self._templates) + 1.0
        w: dict[str, float] = {}
        for t in cands:
            same = total = 0.0
            for a, b in zip(t.tokens, toks, strict=True):
                if a != WILDCARD:
                    wa = w.get(a)
                    if wa is None:
                        wa = w[a] = log(n / (df.get(a, 0) + 0.5))
                    total += wa
                    if a == b:
                        same += wa
            sim = same / total if total > 0 else 1.0
            if sim > best_sim:
                best, best_sim = t, sim
                if sim >= 1.0:  # nothing later can be nearer
                    break
        return best, best_sim

    def _generalise(self, t: Template, toks: list[str]) -> None:
        old = t.tokens
        if old == toks:
            return
        new = [a if a == b else WILDCARD for a, b in zip(old, toks, strict=True)]
        if new != old:
            kept = set(new)
            self._uncount(t._counted - kept)
            t._counted &= kept
            if self._exact.get(tuple(old)) is t:
                del self._exact[tuple(old)]
            t.tokens = new
            t._text = None
            self.revision += 1
            self._exact.setdefault(tuple(new), t)

    def _uncount(self, toks: set[str]) -> None:
        df = self._df
        for tok in toks:
            _decrement(df, tok)

    def _new(self, toks: list[str], count: int = 0, counted: set[str] | None = None) -> Template:
        t = Template(self._next_id, toks, count)
        self._next_id += 1
        self.revision += 1
        self._templates[t.id] = t
        self._by_len.setdefault(len(toks), []).append(t)
        self._exact.setdefault(tuple(toks), t)
        t._counted = (set(toks) if counted is None else counted) - {WILDCARD}
        df = self._df
        for tok in t._counted:
            df[tok] = df.get(tok, 0) + 1
        # A template kept apart from its siblings adds only the words where it differs,
        # here too: a family of variants is evidence of one template, not of many.
        pdf = self._pdf
        counted_now = t._counted
        for i, a in enumerate(toks):
            if a in counted_now:
                pdf[i, a] = pdf.get((i, a), 0) + 1
        return t

    # -- parameters -------------------------------------------------------------

    def parameters(self, line: str, template: Template) -> list[str]:
        """The values of the template's ``<*>`` in this line, in order."""
        groups = raw_tokens(line)
        ttoks = template.tokens
        if len(groups) != len(ttoks):
            return []
        out: list[str] = []
        for tok, raw in zip(ttoks, groups, strict=True):
            if tok == WILDCARD:
                out.append(" ".join(raw))
            elif WILDCARD in tok:
                m = self._param_re(tok).fullmatch(raw[0])
                if m:
                    out.extend(m.groups())
        return out

    def _param_re(self, tok: str) -> re.Pattern[str]:
        rx = self._param_res.get(tok)
        if rx is None:
            if len(self._param_res) > 4096:
                self._param_res.clear()
            rx = re.compile("(.*?)".join(re.escape(p) for p in tok.split(WILDCARD)), re.S)
            self._param_res[tok] = rx
        return rx

    # -- the store --------------------------------------------------------------

    @property
    def templates(self) -> list[Template]:
        """Every template, by id."""
        return sorted(self._templates.values(), key=lambda t: t.id)

    def get(self, template_id: int) -> Template | None:
        return self._templates.get(template_id)

    @property
    def next_id(self) -> int:
        """The id the next new template will get (ids below it have been given)."""
        return self._next_id

    @property
    def aliases(self) -> dict[int, int]:
        """``{merged template id: the id it went into}`` (a copy; see ``resolve``)."""
        return dict(self._alias)

    def __len__(self) -> int:
        return len(self._templates)

    def merge(self, other: TemplateMiner) -> dict[int, int]:
        """Take in another miner's templates; return ``{other's id: id here}``.

        A template equal to one here (or similar enough, by the same rule as a line)
        merges with it and adds its count; any other gets the next id here. Ids here do
        not change.
        """
        mapping: dict[int, int] = {}
        for o in other.templates:
            t = self._exact.get(tuple(o.tokens)) or self._place(list(o.tokens))
            t.count += o.count
            mapping[o.id] = t.id
        for oid in other._alias:  # ids the other miner merged away: where they went
            target = mapping.get(other.resolve(oid))
            if target is not None:
                mapping[oid] = target
        # Later templates may have fused earlier ones: point every id at where it is now.
        # Masked lines cached here still point at the right template (a fuse updates the
        # cache, and a template only ever becomes more general).
        mapping = {k: self.resolve(v) for k, v in mapping.items()}
        return mapping

    def to_dict(self) -> dict[str, Any]:
        """The store as JSON-able data (``from_dict`` reads it back)."""
        return {
            "format": "opsloop.log-templates/1",
            "config": self.config.to_dict(),
            "next_id": self._next_id,
            "aliases": {str(k): v for k, v in self._alias.items()},
            "templates": [
                {
                    "id": t.id,
                    "template": t.template,
                    "tokens": t.tokens,
                    "count": t.count,
                    # what it counts in the token frequencies (less than its tokens for
                    # a template kept apart from its siblings)
                    "counted": sorted(t._counted),
                }
                for t in self.templates
            ],
            # header-field evidence beyond what the templates above hold now
            "places": [[i, tok, n] for (i, tok), n in self._pdf.items() if n >= 2],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: MinerConfig | None = None) -> TemplateMiner:
        """A miner holding the templates of ``to_dict``'s data (its configuration unless
        ``config`` is given)."""
        from opsloop.errors import InvalidInput

        if data.get("format") != "opsloop.log-templates/1":
            raise InvalidInput(
                f"not an opsloop template store (format {data.get('format')!r}); "
                "expected 'opsloop.log-templates/1'"
            )
        try:
            return cls._from_dict(data, config)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"template store is malformed ({exc!r}); write it anew") from exc

    @classmethod
    def _from_dict(cls, data: dict[str, Any], config: MinerConfig | None) -> TemplateMiner:
        if config is None:
            cfg = data.get("config") or {}
            d = MinerConfig()
            config = MinerConfig(
                similarity=float(cfg.get("similarity", d.similarity)),
                header_share=float(cfg.get("header_share", d.header_share)),
                variable_after=int(cfg.get("variable_after", d.variable_after)),
                cache_size=int(cfg.get("cache_size", d.cache_size)),
            )
        m = cls(config)
        for row in data["templates"]:
            counted = row.get("counted")
            m._next_id = int(row["id"])
            m._new(
                [str(x) for x in row["tokens"]],
                int(row["count"]),
                None if counted is None else {str(x) for x in counted},
            )
        pdf = m._pdf
        for i, tok, n in data.get("places") or ():
            key = (int(i), str(tok))
            pdf[key] = max(pdf.get(key, 0), int(n))
        m._alias = {int(k): int(v) for k, v in (data.get("aliases") or {}).items()}
        m._next_id = max(int(data.get("next_id", 1)), max(m._templates, default=0) + 1)
        return m
