"""The lexical features of a (new prompt, cached prompt) pair, and the rule guard built on them.

``features`` turns a pair and its cosine into the ``FEATURES`` row the verifier's trees read
(``cachemux.semantic.matcher``); ``guard_fires`` is the veto: numbers, negation or proper nouns
differ, an antonym replaces a word, units differ, or shared words swap order. All of it is plain
Python over tokens, so a fitted model re-evaluates exactly anywhere; a prompt's parse is cached
(``_parse``), as a lookup scores one new prompt against several cached ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["FEATURES", "features", "guard_fires"]

_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)?")
_NEGATIONS = frozenset("""not no never none nobody nothing nowhere neither nor cannot without
    isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't shouldn't hasn't
    haven't hadn't mustn't ain't non""".split())  # "non": the prefix of "non-duplicate", "non-empty"
# number words as digits ("three sisters" = "3 sisters"); not "one" (a pronoun: "how does one ...")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()) if w != "_"}
_NUMBER_WORDS.update(thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80", ninety="90",
                     hundred="100", thousand="1000", million="1000000", billion="1000000000")
_WH = frozenset("what why how when where who whom whose which".split())
_WH_SAME = {"which": "what", "whom": "who"}  # "What/Which is the best ..." ask the same
_STOP = frozenset("""a an the is are was were be been being am do does did to of in on at for by with
    from as and or if it its this that these those i me my we our you your he she they them their his
    her there here can could should would will shall may might must has have had so than then about
    into up out any some all also just very really get got s""".split()) | _WH
_ANTONYMS = [("ascending", "descending"), ("good", "bad"), ("best", "worst"), ("better", "worse"),
             ("increase", "decrease"), ("more", "less"), ("most", "least"), ("max", "min"),
             ("maximum", "minimum"), ("before", "after"), ("buy", "sell"), ("cheap", "expensive"),
             ("hot", "cold"), ("first", "last"), ("left", "right"), ("import", "export"),
             ("positive", "negative"), ("true", "false"), ("male", "female"), ("man", "woman"),
             ("men", "women"), ("boy", "girl"), ("old", "new"), ("young", "old"), ("large", "small"),
             ("big", "small"), ("high", "low"), ("higher", "lower"), ("fast", "slow"), ("win", "lose"),
             ("start", "end"), ("open", "close"), ("add", "remove"), ("encrypt", "decrypt"),
             ("upload", "download"), ("north", "south"), ("east", "west"), ("rich", "poor"),
             ("easy", "hard"), ("pros", "cons"), ("advantages", "disadvantages"), ("love", "hate"),
             ("like", "dislike"), ("legal", "illegal"), ("safe", "dangerous"), ("healthy", "unhealthy"),
             ("possible", "impossible"), ("happy", "sad"), ("long", "short"), ("early", "late"),
             ("above", "below"), ("inside", "outside"), ("internal", "external"), ("input", "output"),
             ("push", "pull"), ("send", "receive"), ("gain", "lose"), ("strong", "weak"),
             ("celsius", "fahrenheit"), ("lowercase", "uppercase"), ("odd", "even"), ("yes", "no"),
             # comparatives of the pairs above ("run faster" / "run slower")
             ("faster", "slower"), ("bigger", "smaller"), ("larger", "smaller"), ("longer", "shorter"),
             ("stronger", "weaker"), ("easier", "harder"), ("older", "younger"), ("older", "newer"),
             ("richer", "poorer"), ("hotter", "colder"), ("cheaper", "costlier")]
# units, by what they measure: two texts naming different units ask different things ("how many
# kilometers" / "how many miles"); abbreviations and plurals map to one name
_UNITS = {}
for _names in ("km kilometer kilometers kilometre kilometres", "mi mile miles", "m meter meters metre metres",
               "cm centimeter centimeters centimetre centimetres", "mm millimeter millimeters", "ft foot feet",
               "in inch inches", "yd yard yards", "kg kilogram kilograms kilo kilos", "g gram grams",
               "lb lbs pound pounds", "oz ounce ounces", "l liter liters litre litres", "ml milliliter milliliters",
               "gal gallon gallons", "celsius centigrade", "fahrenheit", "kelvin", "mph", "kph kmh",
               "usd dollar dollars", "eur euro euros", "gbp sterling", "inr rupee rupees", "yen", "bytes byte",
               "kb kilobyte kilobytes", "mb megabyte megabytes", "gb gigabyte gigabytes", "tb terabyte terabytes",
               "second seconds sec secs", "minute minutes min mins", "hour hours hr hrs", "day days",
               "week weeks", "month months", "year years", "decade decades", "century centuries",
               "acre acres", "hectare hectares"):
    _n = _names.split()
    for _w in _n:
        _UNITS[_w] = _n[0]
_AMBIGUOUS_UNITS = frozenset({"m", "in", "g", "l", "min", "mi", "sec"})  # also ordinary words: only beside a number
_ANTONYM: dict[str, set[str]] = {}
for _a, _b in _ANTONYMS:
    _ANTONYM.setdefault(_a, set()).add(_b)
    _ANTONYM.setdefault(_b, set()).add(_a)

FEATURES = ("cos", "jaccard", "content_jaccard", "only_min", "only_max", "len_ratio", "same_norm",
            "numbers_differ", "numbers_reordered", "negation_differs", "entities_differ", "wh_differs",
            "antonym", "order_discord", "swapped",
            # word forms, characters, lengths (a model lists the features it uses by name)
            "stem_jaccard", "trigram_jaccard", "n_words_max", "n_content_min", "first_same", "only_long_max",
            "stem_sym_diff", "units_differ")


@dataclass(frozen=True)
class _Parsed:
    words: tuple[str, ...]          # lowercased tokens in order
    entities: frozenset[str]        # lowercased capitalised words that are not sentence-initial
    numbers: tuple[str, ...]        # digits, and number words as digits
    digits: int                     # how many of them were written with digits
    stems: frozenset[str]           # ``_stem`` of the content words
    trigrams: frozenset[str]        # character trigrams of the words joined by spaces
    units: frozenset[str]           # ``_units`` of the words


@lru_cache(maxsize=4096)
def _parse(text: str) -> _Parsed:
    raw = [w[:-2] if w.endswith("'s") else w for w in _TOKEN.findall(text.replace("\u2019", "'"))]
    words = tuple(w.lower() for w in raw)
    ents = set()
    for i, w in enumerate(raw):
        if w[0].isupper() and w.lower() not in _STOP and (i > 0 or (len(w) > 1 and w[1:].isupper())):
            ents.add(w.lower())
    nums = tuple(w.replace(",", "") if w[0].isdigit() else _NUMBER_WORDS[w]
                 for w in words if w[0].isdigit() or w in _NUMBER_WORDS)
    return _Parsed(words, frozenset(ents), nums, sum(1 for w in words if w[0].isdigit()),
                   frozenset(_stem(w) for w in words if w not in _STOP), frozenset(_trigrams(words)), _units(words))


def _wh(words: set[str]) -> set[str]:
    return {_WH_SAME.get(w, w) for w in words & _WH}


def _content(p: _Parsed) -> list[str]:
    return [w for w in p.words if w not in _STOP]


def _discord(a: list[str], b: list[str]) -> float:
    """Fraction of discordant pairs among the words both share exactly once (0: same order)."""
    once_a = {w for w in a if a.count(w) == 1}
    shared = [w for w in b if w in once_a and b.count(w) == 1]
    if len(shared) < 2:
        return 0.0
    pos = {w: i for i, w in enumerate(a)}
    ranks = [pos[w] for w in shared]
    n = len(ranks)
    bad = sum(1 for i in range(n) for j in range(i + 1, n) if ranks[i] > ranks[j])
    return bad / (n * (n - 1) / 2)


def _stem(w: str) -> str:
    """A crude suffix strip, then one final "e" ("learning" / "learned" / "learns" -> "learn",
    "squares" / "square" -> "squar"), enough to match word forms."""
    for suf in ("ing", "edly", "ed", "es", "ly", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            w = w[:-len(suf)]
            break
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


def _trigrams(words: tuple[str, ...]) -> set[str]:
    s = " " + " ".join(words) + " "
    return {s[i:i + 3] for i in range(len(s) - 2)}


def _units(words: tuple[str, ...]) -> frozenset[str]:
    """The units a text names (an ambiguous abbreviation only right after a number: "5 m", "10 in")."""
    out = set()
    for i, w in enumerate(words):
        u = _UNITS.get(w)
        if u is not None and (w not in _AMBIGUOUS_UNITS or (i and words[i - 1][0].isdigit())):
            out.add(u)
    return frozenset(out)


def _numbers_differ(a: _Parsed, b: _Parsed) -> bool:
    """Different numbers; a number *word* on one side only with no number on the other ("the top
    ten ..." / "the best ...") does not count: such words are often not quantities."""
    if sorted(a.numbers) == sorted(b.numbers):
        return False
    return not ((not a.numbers and not b.digits) or (not b.numbers and not a.digits))


def _swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two content words both texts hold once trade places around a word both keep between them
    ("10 miles to kilometers" / "10 kilometers to miles"; not "capital of France" / "France's
    capital", where nothing stays between)."""
    a, b = a[:64], b[:64]
    pa = {w: i for i, w in enumerate(a) if w not in _STOP and a.count(w) == 1}
    pb = {w: i for i, w in enumerate(b) if w in pa and b.count(w) == 1}
    shared = sorted(pb, key=pa.__getitem__)
    for i, x in enumerate(shared):
        for y in shared[i + 1:]:
            if pb[x] > pb[y] and set(a[pa[x] + 1:pa[y]]) & set(b[pb[y] + 1:pb[x]]):
                return True
    return False


def features(query: str, cached: str, cos: float) -> list[float]:
    """The verifier's inputs for one pair, in ``FEATURES`` order (symmetric in the two texts)."""
    a, b = _parse(query), _parse(cached)
    sa, sb = set(a.words), set(b.words)
    ca, cb = _content(a), _content(b)
    sca, scb = set(ca), set(cb)
    union = sa | sb
    cunion = sca | scb
    only_a, only_b = len(sca - scb), len(scb - sca)
    na, nb = len(a.words), len(b.words)
    ents = (a.entities - sb) | (b.entities - sa)
    neg_a = sum(1 for w in a.words if w in _NEGATIONS or w.endswith("n't"))
    neg_b = sum(1 for w in b.words if w in _NEGATIONS or w.endswith("n't"))
    antonym = any(w in _ANTONYM and not (_ANTONYM[w] & sa) and (_ANTONYM[w] & sb) and w not in sb for w in sa)
    stem_a, stem_b = a.stems, b.stems
    stems = stem_a | stem_b
    tri_a, tri_b = a.trigrams, b.trigrams
    long_a = sum(1 for w in sca - scb if len(w) >= 7 and _stem(w) not in stem_b)  # long words: rarer, carry meaning
    long_b = sum(1 for w in scb - sca if len(w) >= 7 and _stem(w) not in stem_a)
    return [
        float(cos),
        len(sa & sb) / len(union) if union else 1.0,
        len(sca & scb) / len(cunion) if cunion else 1.0,
        float(min(only_a, only_b)),
        float(max(only_a, only_b)),
        min(na, nb) / max(na, nb) if max(na, nb) else 1.0,
        float(a.words == b.words),
        float(_numbers_differ(a, b)),
        float(sorted(a.numbers) == sorted(b.numbers) and a.numbers != b.numbers),
        float((neg_a > 0) != (neg_b > 0)),
        float(len(ents)),
        float(_wh(sa) != _wh(sb) and bool(_wh(sa)) and bool(_wh(sb))),
        float(antonym),
        _discord(ca, cb),
        float(_swapped(a.words, b.words)),
        len(stem_a & stem_b) / len(stems) if stems else 1.0,
        len(tri_a & tri_b) / len(tri_a | tri_b) if tri_a | tri_b else 1.0,
        float(max(na, nb)),
        float(min(len(ca), len(cb))),
        float(bool(na and nb) and a.words[0] == b.words[0]),
        float(max(long_a, long_b)),
        float(len(stem_a ^ stem_b)),
        float(a.units != b.units and bool(a.units) and bool(b.units)),
    ]


def guard_fires(query: str, cached: str) -> bool:
    """The rule-based guard: numbers, negation or proper nouns differ, an antonym replaces a word,
    or the words both share swap order."""
    return _guard(features(query, cached, 1.0))


_GUARD = [FEATURES.index(n) for n in ("numbers_differ", "numbers_reordered", "negation_differs", "entities_differ",
                                      "antonym", "swapped", "units_differ")]


def _guard(x: list[float]) -> bool:
    return any(x[i] for i in _GUARD)
