"""Deterministic, plausible JSON instances for the JSON Schema subset xAI structured outputs support.

The local server's structured answers validate against the requested schema and read like
answers, while saying plainly where they come from. Every choice is seeded by the prompt
(``hint``), an optional extra ``seed`` (the server passes the digests of attached images) and
the value's path in the document, so the same request always gets the same answer.

Rules: ``const`` wins, then ``enum`` (the value the prompt mentions first, as a whole word and
case-insensitively, else a seeded pick); ``anyOf``/``oneOf`` take the first non-null branch;
``allOf`` branches are merged; ``$ref`` resolves ``#/$defs/..``/``#/definitions/..``
(recursion is cut off at depth 12); type lists take the first non-``null`` type; objects get
every declared property; arrays get ``minItems`` items when it is set, else 2 or 3 (capped by
``maxItems``), without repeats where a field offers alternatives. From depth 4 on (a recursive
schema), objects get only their required properties and arrays only ``minItems`` items.

Strings: a ``format`` (date, time, date-time, duration, email, uri/url, hostname, ipv4, ipv6,
uuid) gets a valid value of it, and a ``pattern`` is honoured. Otherwise the property's name
decides (``snake_case`` and ``camelCase`` names are split into words):

* free-text fields (``summary``, ``answer``, ``headline``, ``description``, ``caption``,
  ``explanation``, ``tip``...) get a sentence starting ``(local server)`` about the
  conversation's topic (its first proper noun, else its first few content words); lists of
  points (``developments``, ``findings``, ``steps``...) get numbered ones;
* ``query``/``question``/``prompt``/``search`` get the prompt itself, ``translation`` says what
  it would translate;
* names with a vocabulary (``city``, ``country``, ``name``, ``company``, ``language``,
  ``colour``, ``status``, ``priority``, ``sentiment``, ``category``, ``tags``, ``objects``...)
  get a word from it, preferring one the prompt mentions (a city it names; that city's country);
* dates, times, emails, URLs, phone numbers, ids by name;
* anything else gets a short common noun.

``minLength``/``maxLength`` are honoured. Numbers fall in a range that suits the name (a score
0-1, a rating 1-5, a year, a price, an age, a population in millions...) within
``minimum``/``maximum``, exclusive bounds and ``multipleOf``. Booleans are seeded.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import itertools
import math
import re
import uuid
from collections.abc import Sequence
from typing import Any

_MAX_DEPTH = 12
_SHALLOW = 4  # from this depth on, optional properties and optional array items are left out
LOCAL = "(local server)"

# -- vocabularies ----------------------------------------------------------------------------
CITIES = {
    "Lisbon": "Portugal", "Porto": "Portugal", "Paris": "France", "Lyon": "France",
    "Oslo": "Norway", "Berlin": "Germany", "Munich": "Germany", "Madrid": "Spain",
    "Barcelona": "Spain", "Rome": "Italy", "Milan": "Italy", "London": "United Kingdom",
    "Edinburgh": "United Kingdom", "Dublin": "Ireland", "Amsterdam": "Netherlands",
    "Brussels": "Belgium", "Vienna": "Austria", "Prague": "Czechia", "Warsaw": "Poland",
    "Stockholm": "Sweden", "Copenhagen": "Denmark", "Helsinki": "Finland", "Athens": "Greece",
    "Istanbul": "Turkey", "Cairo": "Egypt", "Nairobi": "Kenya", "Lagos": "Nigeria",
    "Cape Town": "South Africa", "Tokyo": "Japan", "Osaka": "Japan", "Seoul": "South Korea",
    "Beijing": "China", "Shanghai": "China", "Mumbai": "India", "Delhi": "India",
    "Singapore": "Singapore", "Bangkok": "Thailand", "Sydney": "Australia",
    "Melbourne": "Australia", "Auckland": "New Zealand", "Toronto": "Canada",
    "Montreal": "Canada", "Vancouver": "Canada", "New York": "United States",
    "San Francisco": "United States", "Chicago": "United States", "Austin": "United States",
    "Mexico City": "Mexico", "Lima": "Peru", "Bogota": "Colombia", "Santiago": "Chile",
    "Buenos Aires": "Argentina", "Sao Paulo": "Brazil", "Rio de Janeiro": "Brazil",
}
COUNTRY_CODES = {
    "Portugal": "PT", "France": "FR", "Norway": "NO", "Germany": "DE", "Spain": "ES",
    "Italy": "IT", "United Kingdom": "GB", "Ireland": "IE", "Netherlands": "NL",
    "Belgium": "BE", "Austria": "AT", "Czechia": "CZ", "Poland": "PL", "Sweden": "SE",
    "Denmark": "DK", "Finland": "FI", "Greece": "GR", "Turkey": "TR", "Egypt": "EG",
    "Kenya": "KE", "Nigeria": "NG", "South Africa": "ZA", "Japan": "JP", "South Korea": "KR",
    "China": "CN", "India": "IN", "Singapore": "SG", "Thailand": "TH", "Australia": "AU",
    "New Zealand": "NZ", "Canada": "CA", "United States": "US", "Mexico": "MX", "Peru": "PE",
    "Colombia": "CO", "Chile": "CL", "Argentina": "AR", "Brazil": "BR",
}
LANGUAGES = {
    "English": "en", "French": "fr", "Portuguese": "pt", "Spanish": "es", "German": "de",
    "Italian": "it", "Dutch": "nl", "Japanese": "ja", "Korean": "ko", "Chinese": "zh",
    "Hindi": "hi", "Arabic": "ar", "Norwegian": "no", "Swedish": "sv", "Polish": "pl",
}
FIRST_NAMES = ["Ana", "Ben", "Chloe", "Daniel", "Elena", "Farah", "Hugo", "Ines", "Jonas",
               "Kenji", "Lena", "Marco", "Nadia", "Omar", "Priya", "Rui", "Sofia", "Tomas"]
LAST_NAMES = ["Almeida", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Haddad",
              "Ito", "Jensen", "Kowalski", "Lopes", "Moreau", "Novak", "Okafor", "Patel"]
VOCAB: dict[str, list[str]] = {
    "city": list(CITIES),
    "country": list(COUNTRY_CODES),
    "country_code": list(COUNTRY_CODES.values()),
    "language": list(LANGUAGES),
    "language_code": list(LANGUAGES.values()),
    "first_name": FIRST_NAMES,
    "last_name": LAST_NAMES,
    "name": [f"{f} {s}" for f, s in zip(FIRST_NAMES, LAST_NAMES * 2, strict=False)],
    "username": ["ana_costa", "data_ben", "kenji.ito", "lena_b", "priya.dev", "rui_lopes"],
    "company": ["Acme Corp", "Northwind Traders", "Globex", "Initech", "Umbrella Labs",
                "Blue Harbour Ltd", "Contoso"],
    "colour": ["red", "blue", "green", "yellow", "orange", "purple", "black", "white", "grey"],
    "currency": ["EUR", "USD", "GBP", "JPY", "CHF", "CAD", "BRL"],
    "status": ["open", "in progress", "resolved", "pending", "closed"],
    "priority": ["low", "medium", "high"],
    "sentiment": ["positive", "neutral", "negative", "mixed"],
    "category": ["general", "billing", "account", "hardware", "software", "feedback",
                 "question", "bug", "other"],
    "tag": ["travel", "data", "weather", "finance", "science", "music", "food", "history",
            "sports", "technology"],
    "object": ["tree", "car", "bicycle", "table", "lamp", "sign", "window", "person", "dog",
               "chair", "building", "cloud"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"],
    "season": ["spring", "summer", "autumn", "winter"],
    "unit": ["kg", "m", "km", "s", "h", "L", "EUR"],
    "street": ["12 Harbour Street", "4 Market Square", "27 River Road", "8 Garden Lane",
               "150 Station Avenue"],
    "postcode": ["1100-148", "75001", "0150", "10115", "SW1A 1AA", "94103"],
    "phone": ["+1 555 0100", "+1 555 0142", "+44 20 7946 0958", "+351 21 000 0000"],
    "generic": ["architecture", "food", "music", "history", "museums", "parks", "markets",
                "festivals", "beaches", "design", "culture", "nightlife", "views", "coffee"],
}
#: Field-name words (and whole names) -> vocabulary or generator.
ALIASES: dict[str, str] = {
    "city": "city", "town": "city", "capital": "city", "location": "city", "place": "city",
    "destination": "city", "origin": "city", "hometown": "city",
    "country": "country", "nation": "country", "nationality": "country",
    "country_code": "country_code", "iso_code": "country_code",
    "language": "language", "lang": "language", "locale": "language_code",
    "language_code": "language_code",
    "name": "name", "full_name": "name", "author": "name", "person": "name", "owner": "name",
    "assignee": "name", "customer": "name", "contact": "name", "speaker": "name",
    "manager": "name", "employee": "name", "reviewer": "name", "artist": "name",
    "first_name": "first_name", "given_name": "first_name", "firstname": "first_name",
    "last_name": "last_name", "surname": "last_name", "family_name": "last_name",
    "lastname": "last_name",
    "username": "username", "user": "username", "handle": "username", "login": "username",
    "user_name": "username",
    "company": "company", "organization": "company", "organisation": "company",
    "org": "company", "employer": "company", "vendor": "company", "brand": "company",
    "publisher": "company", "manufacturer": "company", "supplier": "company",
    "color": "colour", "colour": "colour",
    "currency": "currency",
    "status": "status", "state": "status", "stage": "status",
    "priority": "priority", "severity": "priority", "urgency": "priority", "level": "priority",
    "risk": "priority", "impact": "priority",
    "sentiment": "sentiment", "tone": "sentiment", "mood": "sentiment", "feeling": "sentiment",
    "category": "category", "kind": "category", "type": "category", "class": "category",
    "genre": "category", "label": "category", "group": "category", "department": "category",
    "tag": "tag", "keyword": "tag", "topic_tag": "tag", "theme_tag": "tag",
    "object": "object", "thing": "object", "item_name": "object",
    "weekday": "weekday", "day": "weekday", "day_of_week": "weekday",
    "month": "month", "season": "season", "unit": "unit", "units": "unit",
    "street": "street", "address": "street", "street_address": "street",
    "zip": "postcode", "zipcode": "postcode", "zip_code": "postcode", "postcode": "postcode",
    "postal_code": "postcode", "postal": "postcode",
    "phone": "phone", "telephone": "phone", "mobile": "phone", "phone_number": "phone",
    # generators, not vocabularies
    "email": "@email", "mail": "@email", "email_address": "@email",
    "url": "@uri", "uri": "@uri", "link": "@uri", "website": "@uri", "homepage": "@uri",
    "href": "@uri", "site": "@uri", "web": "@uri",
    "domain": "@hostname", "hostname": "@hostname", "host": "@hostname",
    "ip": "@ipv4", "ip_address": "@ipv4",
    "date": "@date", "deadline": "@date", "birthday": "@date", "dob": "@date",
    "birth_date": "@date", "due": "@date", "published": "@date", "when": "@date",
    "timestamp": "@date-time", "datetime": "@date-time", "at": "@date-time",
    "time": "@time", "hour": "@time",
    "year": "@year", "version": "@version", "duration": "@duration",
    "id": "@id", "uuid": "@uuid", "guid": "@uuid", "identifier": "@id", "ref": "@id",
    "reference": "@id", "code": "@id", "sku": "@id", "slug": "@slug",
    "filename": "@filename", "file_name": "@filename", "file": "@filename", "path": "@filename",
    "query": "@query", "q": "@query", "question": "@query", "search": "@query",
    "search_query": "@query", "prompt": "@query", "input": "@query", "search_term": "@query",
    "translation": "@translation", "translated_text": "@translation",
    "translated": "@translation",
    "topic": "@topic", "subject": "@topic", "theme": "@topic",
}
#: Free-text field words -> sentence (``{topic}``/``{Topic}``: the conversation's topic).
FREE_TEXT: dict[str, str] = {
    **dict.fromkeys(["summary", "overview", "abstract", "tldr", "gist", "synopsis", "recap",
                     "digest"], "A short summary of {topic}."),
    **dict.fromkeys(["description", "caption", "alt", "alt_text", "blurb"],
                    "A short description of {topic}."),
    **dict.fromkeys(["headline", "heading"], "{Topic} at a glance"),
    **dict.fromkeys(["title"], "A note on {topic}"),
    **dict.fromkeys(["answer", "response", "reply", "result", "output", "text", "content",
                     "body", "message", "comment", "note", "notes", "details", "info",
                     "information", "remarks", "statement", "conclusion"],
                    "An answer about {topic}."),
    **dict.fromkeys(["explanation", "reason", "reasoning", "rationale", "justification",
                     "why", "cause", "motivation"], "Why {topic} is so, in brief."),
    **dict.fromkeys(["analysis", "assessment", "evaluation", "review", "feedback", "critique",
                     "opinion", "verdict_reason"], "An assessment of {topic}."),
    **dict.fromkeys(["tip", "advice", "recommendation", "suggestion", "hint", "action",
                     "next_step", "plan"], "One suggestion about {topic}."),
    **dict.fromkeys(["sentence", "paragraph", "story", "poem", "haiku", "joke", "quote",
                     "slogan", "tagline", "bio", "biography", "greeting", "intro",
                     "introduction"], "A {kind} about {topic}."),
}
#: Words that make a list of free-text points ("(local server) Development 1 on ...").
POINTS = {"development", "point", "finding", "highlight", "takeaway", "insight", "step",
          "idea", "bullet", "event", "update", "change", "fact", "detail", "key_point",
          "lesson", "reason", "tip", "recommendation", "suggestion", "action", "risk",
          "benefit", "pro", "con", "issue", "question", "example", "argument", "claim"}
#: Number ranges by name word: (low, high, integer-only names round anyway).
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(["score", "confidence", "probability", "likelihood", "ratio", "share",
                     "weight", "certainty", "similarity", "relevance"], (0.05, 0.95)),
    **dict.fromkeys(["rating", "stars", "star"], (1, 5)),
    **dict.fromkeys(["percent", "percentage", "pct"], (5, 95)),
    "age": (18, 80), "year": (1990, 2026), "month": (1, 12), "day": (1, 28),
    "hour": (0, 23), "minute": (0, 59), "second": (0, 59),
    **dict.fromkeys(["price", "cost", "amount", "total", "budget", "fee", "revenue",
                     "salary", "balance", "value"], (5, 500)),
    **dict.fromkeys(["count", "number", "quantity", "qty", "num", "n", "items", "size",
                     "length", "days", "nights", "people", "guests", "attempts", "tokens"],
                    (1, 12)),
    "millions": (0.5, 15), "population": (20_000, 3_000_000),
    **dict.fromkeys(["temperature", "temp", "celsius"], (-5, 35)),
    **dict.fromkeys(["lat", "latitude"], (-60, 70)),
    **dict.fromkeys(["lon", "lng", "longitude"], (-150, 170)),
    **dict.fromkeys(["duration", "minutes", "seconds", "hours"], (1, 90)),
    **dict.fromkeys(["distance", "km", "miles"], (1, 400)),
}
_STOP_WORDS = """
a an the and or but if then else of to in on at by for from with without about into onto
over under between among as is are was were be been being do does did done doing have has
had having i me my we our you your he she it its they them their this that these those
there here what which who whom whose when where why how all any both each few more most
other some such no nor not only own same so than too very can could will would shall should
may might must just also please one two three first second last new next now today
tomorrow yesterday once again ever while after before during until up down out off
summarise summarize summarised describe write give tell list explain translate turn make
create generate label classify extract return reply answer provide find show suggest pick
choose judge rate compare search cite use using keep read state say name fill put add
happened happen happens going get got like want need know think look
answer question sentence sentences line lines one-line word words text json structured
data format digest headline summary tone key overall main short brief concise quick
response output result results prompt request example examples source sources
"""
_STOP = frozenset(_STOP_WORDS.split())


def generate(schema: Any, hint: str = "", *, context: Sequence[str] = (), seed: str = "") -> Any:
    """Return a value that satisfies ``schema``.

    ``hint`` is the prompt the answer is for; ``context`` the conversation's user texts (oldest
    first; the topic of free-text fields comes from the first that has one); ``seed`` more
    material for the choices (e.g. digests of attached images).
    """
    return _Gen(schema, hint, context, seed).value(schema, None, "", 0)


class _Gen:
    def __init__(self, root: Any, hint: str, context: Sequence[str], seed: str) -> None:
        self.root = root
        self.hint = " ".join(hint.split())
        self.lower = self.hint.lower()
        self.context = [" ".join(t.split()) for t in context if t and t.strip()] or [self.hint]
        self.seed = f"{self.hint}\x00{seed}"
        self._topic: str | None = None

    # -- seeded choices ---------------------------------------------------------------------
    def unit(self, path: str, salt: int = 0) -> float:
        """A number in [0, 1) fixed by the request and ``path``."""
        digest = hashlib.sha256(f"{self.seed}\x00{path}\x00{salt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def index(self, n: int, path: str, salt: int = 0) -> int:
        return min(int(self.unit(path, salt) * n), n - 1)

    def mentioned(self, values: Sequence[Any]) -> list[Any]:
        """The string ``values`` the prompt mentions as whole words, in the prompt's order."""
        found = []
        for v in values:
            if isinstance(v, str) and v.strip():
                m = re.search(r"(?<!\w)" + re.escape(v.lower()) + r"(?!\w)", self.lower)
                if m:
                    found.append((m.start(), v))
        return [v for _, v in sorted(found, key=lambda pair: pair[0])]

    def pick(self, values: Sequence[Any], path: str, attempt: int = 0) -> Any:
        """A mentioned value (the ``attempt``-th), else a seeded one."""
        mentioned = self.mentioned(values)
        if attempt < len(mentioned):
            return mentioned[attempt]
        return values[self.index(len(values), path, attempt)]

    # -- schema plumbing --------------------------------------------------------------------
    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref supported: {ref}")
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def merge(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """Inline ``$ref`` and ``allOf`` into one dict."""
        out = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        parts = []
        if "$ref" in schema:
            parts.append(self.resolve(schema["$ref"]))
        parts.extend(schema.get("allOf", []))
        for part in parts:
            if not isinstance(part, dict):
                continue
            part = self.merge(part, depth)
            for key, val in part.items():
                if key == "properties":
                    out["properties"] = {**val, **out.get("properties", {})}
                elif key == "required":
                    out["required"] = list(dict.fromkeys([*out.get("required", []), *val]))
                else:
                    out.setdefault(key, val)
        return out

    def value(self, schema: Any, name: str | None, path: str, depth: int, attempt: int = 0,
              item: int | None = None) -> Any:
        if schema is True or schema is None or schema == {}:
            return self.string({}, name, path, attempt, item)
        if schema is False:
            return None
        schema = self.merge(schema, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            values = schema["enum"]
            return self.pick(values, path, attempt) if values else None
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = schema[key]
                chosen = next((o for o in options if not _is_null(o)), options[0])
                rest = {k: v for k, v in schema.items() if k != key}
                return self.value({**rest, **chosen} if isinstance(chosen, dict) else chosen,
                                  name, path, depth + 1, attempt, item)
        typ = schema.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if depth >= _MAX_DEPTH and typ in ("object", "array"):
            return None if _nullable(schema) else ({} if typ == "object" else [])
        if typ == "object":
            props = schema.get("properties", {})
            if depth >= _SHALLOW:  # deep down (a recursive schema): only what is required
                props = {k: v for k, v in props.items() if k in schema.get("required", [])}
            out = {k: self.value(v, k, f"{path}/{k}", depth + 1) for k, v in props.items()}
            for k in schema.get("required", []):
                out.setdefault(k, self.string({}, k, f"{path}/{k}", 0, None))
            return out
        if typ == "array":
            return self.array(schema, name, path, depth)
        if typ in ("integer", "number"):
            return self.number(schema, name, path, typ == "integer", attempt)
        if typ == "boolean":
            return self.unit(path, attempt) < 0.5
        if typ == "null":
            return None
        return self.string(schema, name, path, attempt, item)

    def array(self, schema: dict[str, Any], name: str | None, path: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        count = low if low > 0 or depth >= _SHALLOW else 2 + self.index(2, path + "#len")
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {})
        if items is False:
            count = min(count, len(prefix))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        out: list[Any] = []
        seen: list[str] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            for attempt in range(8):
                val = self.value(sub, name, f"{path}/{i}", depth + 1, attempt, item=i)
                key = repr(val)
                if key not in seen:
                    break
            if key in seen and isinstance(val, str) and schema.get("uniqueItems"):
                val = f"{val} {i + 1}"
                key = repr(val)
            seen.append(key)
            out.append(val)
        return out

    # -- strings ----------------------------------------------------------------------------
    def string(self, schema: dict[str, Any], name: str | None, path: str, attempt: int,
               item: int | None) -> str:
        fmt = schema.get("format")
        text = self.formatted(fmt, name, path, attempt) if isinstance(fmt, str) else None
        if text is not None:
            return text
        text = self.named(name, path, attempt, item)
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not _matches(pattern, text):
            text = _from_pattern(pattern, lambda n, salt: self.index(n, path, salt)) or text
        return _fit(text, schema)

    def formatted(self, fmt: str, name: str | None, path: str, attempt: int) -> str | None:
        day = datetime.date(2026, 1, 1) + datetime.timedelta(days=self.index(365, path, attempt))
        clock = f"{8 + self.index(10, path, attempt + 1):02d}:{15 * self.index(4, path, attempt):02d}"
        if fmt == "date":
            return day.isoformat()
        if fmt == "time":
            return f"{clock}:00"
        if fmt == "date-time":
            return f"{day.isoformat()}T{clock}:00Z"
        if fmt == "duration":
            return f"P{1 + self.index(14, path, attempt)}D"
        if fmt in ("email", "idn-email"):
            first = self.pick(FIRST_NAMES, path + "#first", attempt)
            last = self.pick(LAST_NAMES, path + "#last", attempt)
            return f"{first}.{last}@example.com".lower()
        if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            return f"https://example.com/{self.slug()}" + (f"-{attempt + 1}" if attempt else "")
        if fmt in ("hostname", "idn-hostname"):
            return f"host{attempt + 1}.example.com" if attempt else "example.com"
        if fmt == "ipv4":
            return f"192.0.2.{1 + self.index(254, path, attempt)}"
        if fmt == "ipv6":
            return f"2001:db8::{1 + self.index(254, path, attempt):x}"
        if fmt == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.seed}:{path}:{attempt}"))
        return None

    def named(self, name: str | None, path: str, attempt: int, item: int | None) -> str:
        words = _words(name or "")
        whole = ["_".join(words), "_".join(_singular(w) for w in words)]
        if item is not None and words and (whole[1] in POINTS or _singular(words[-1]) in POINTS):
            label = (whole[1] if whole[1] in POINTS else _singular(words[-1])).replace("_", " ")
            return f"{LOCAL} {label.capitalize()} {item + 1} on {self.topic()}."
        # The head noun is the last word ("short_summary"), unless it only names the thing
        # before it ("city_name").
        heads = list(reversed(words))
        if len(words) > 1 and words[-1] in ("name", "names"):
            heads = [*reversed(words[:-1]), words[-1]]
        for key in [*whole, *heads]:
            for k in (key, _singular(key)):
                if k in FREE_TEXT:
                    return self.free_text(k, item)
                if k in ALIASES:
                    return self.of_kind(ALIASES[k], path, attempt)
        return str(self.pick(VOCAB["generic"], path, attempt))

    def of_kind(self, kind: str, path: str, attempt: int) -> str:
        if kind.startswith("@"):
            return self.special(kind[1:], path, attempt)
        if kind in ("country", "country_code"):
            countries = self.mentioned(list(COUNTRY_CODES))
            countries += [CITIES[c] for c in self.mentioned(list(CITIES))]
            country = (countries[attempt] if attempt < len(countries)
                       else self.pick(list(COUNTRY_CODES), path, attempt))
            return country if kind == "country" else COUNTRY_CODES[country]
        if kind == "language_code":
            return LANGUAGES[self.pick(list(LANGUAGES), path, attempt)]
        return str(self.pick(VOCAB[kind], path, attempt))

    def special(self, kind: str, path: str, attempt: int) -> str:
        if kind in ("email", "uri", "hostname", "ipv4", "date", "date-time", "time", "duration",
                    "uuid"):
            return self.formatted(kind, None, path, attempt) or ""
        if kind == "year":
            return str(2015 + self.index(12, path, attempt))
        if kind == "version":
            return f"{1 + self.index(3, path, attempt)}.{self.index(10, path, attempt + 1)}.0"
        if kind == "id":
            return f"id-{hashlib.sha256(f'{self.seed}:{path}:{attempt}'.encode()).hexdigest()[:8]}"
        if kind == "slug":
            return self.slug()
        if kind == "filename":
            return f"{self.slug()}.txt"
        if kind == "query":
            return self.hint[:200] or self.topic()
        if kind == "translation":
            return f"{LOCAL} the translation of: {self.hint[:80]}"
        return self.topic().removeprefix("the ")

    def free_text(self, kind: str, item: int | None = None) -> str:
        topic = self.topic()
        template = FREE_TEXT[kind]
        sentence = template.format(topic=topic, Topic=topic[:1].upper() + topic[1:],
                                   kind=kind.replace("_", " "))
        return f"{LOCAL} {sentence}" + (f" ({item + 1})" if item else "")

    def topic(self) -> str:
        """The conversation's topic: that of its first user text that has one."""
        if self._topic is None:
            found = (_topic_of(text) for text in self.context)
            self._topic = next((t for t in found if t is not None), "your request")
        return self._topic

    def slug(self) -> str:
        topic = self.topic().removeprefix("the ").lower()
        return re.sub(r"[^a-z0-9]+", "-", topic).strip("-") or "answer"

    # -- numbers ----------------------------------------------------------------------------
    def number(self, schema: dict[str, Any], name: str | None, path: str, integer: bool,
               attempt: int) -> int | float:
        lo, hi = _bounds(schema)
        xlo, xhi = _exclusive(schema)
        ok = _number_check(lo, hi, xlo, xhi, integer)
        lows = [v for v in (lo, xlo) if v is not None]
        highs = [v for v in (hi, xhi) if v is not None]
        low, high = (max(lows) if lows else None), (min(highs) if highs else None)
        pa, pb = _preferred_range(name)
        a = pa if low is None else max(pa, low)
        b = pb if high is None else min(pb, high)
        if a > b:  # the name's usual range lies outside the schema's bounds
            a = low if low is not None else b - (pb - pa)
            b = high if high is not None else a + (pb - pa)
        u = self.unit(path, attempt)
        mult = schema.get("multipleOf")
        if isinstance(mult, (int, float)) and not isinstance(mult, bool) and mult > 0:
            return _multiple(mult, a, b, u, ok, integer)
        if integer:
            ia, ib = math.ceil(a), math.floor(b)
            if xlo is not None and ia <= xlo:
                ia = math.floor(xlo) + 1
            if xhi is not None and ib >= xhi:
                ib = math.ceil(xhi) - 1
            if ia > ib:  # an exclusive bound squeezed the name's usual range: follow the open side
                if low is None:
                    ia = ib
                elif high is None:
                    ib = ia
                else:  # or, bounded on both sides, take the schema's own range
                    ia = math.floor(xlo) + 1 if xlo is not None and xlo >= low else math.ceil(low)
                    ib = math.ceil(xhi) - 1 if xhi is not None and xhi <= high else math.floor(high)
            picks = [ia + min(int(u * (ib - ia + 1)), ib - ia), ia, ib] if ia <= ib else []
            return next((int(c) for c in picks if ok(c)), int(ia))
        decimals = 2 if b - a <= 10 else 1
        candidates = [round(a + u * (b - a), decimals), round((a + b) / 2, decimals), (a + b) / 2]
        # the name's usual range may shrink to an exclusive bound itself: step inside the schema's
        if low is not None and high is not None:
            candidates.append((low + high) / 2)
        elif low is not None or high is not None:
            candidates.append(low + 1 if low is not None else high - 1)  # type: ignore[operator]
        return float(next((c for c in candidates if ok(c)), (a + b) / 2))


# -- helpers ---------------------------------------------------------------------------------
def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _topic_of(text: str) -> str | None:
    """A text's first proper noun (a capitalised word not opening a sentence), else its first
    content words (not stop words or instructions): ``"Lisbon"``, ``"solar sails"``,
    ``"the chart"``."""
    tokens = list(re.finditer(r"[A-Za-z][\w'-]*", text))
    for i, tok in enumerate(tokens):
        word = tok.group()
        before = text[: tok.start()].rstrip()
        opening = not before or before[-1] in ".?!:;\"'(\n"
        if opening or not word[0].isupper() or len(word) < 2 or word.lower() in _STOP:
            continue
        phrase = [word]
        for prev, nxt in zip(tokens[i:], tokens[i + 1 :], strict=False):
            if text[prev.end() : nxt.start()] != " " or not nxt.group()[0].isupper():
                break
            phrase.append(nxt.group())
        return " ".join(phrase).removesuffix("'s")
    for clause in re.split(r"[.,;:!?()\[\]\"\n]+", text):
        run: list[str] = []
        for word in re.findall(r"[A-Za-z][A-Za-z'-]*", clause):
            if word.lower() in _STOP or len(word) < 3:
                if run:
                    break
                continue
            run.append(word.lower())
            if len(run) == 2:
                break
        if run:
            if len(run) == 1 and not run[0].endswith("s"):
                return "the " + run[0]
            return " ".join(run)
    return None


def _fit(text: str, schema: dict[str, Any]) -> str:
    lo = int(schema.get("minLength", 0))
    hi = schema.get("maxLength")
    filler = iter(VOCAB["generic"] * (1 + lo // 20))
    while len(text) < lo:
        text = f"{text} {next(filler, 'local')}"
    if hi is not None and len(text) > int(hi):
        text = text[: int(hi)]
        if len(text.rstrip()) >= lo:
            text = text.rstrip()
    return text


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True


def _from_pattern(pattern: str, choose: Any) -> str | None:
    """A string matching ``pattern``, a simple regex (literals, classes, repeats, groups,
    alternatives), or None."""
    try:
        parser: Any = importlib.import_module("re._parser")
    except ImportError:  # Python 3.10
        parser = importlib.import_module("sre_parse")
    try:
        parsed = parser.parse(pattern)
    except Exception:
        return None
    out: list[str] = []
    calls = [0]

    def pick(n: int) -> int:
        calls[0] += 1
        return int(choose(n, calls[0])) if n > 1 else 0

    def emit(seq: Any) -> None:
        for op, arg in seq:
            kind = str(op).lower()
            if kind == "literal":
                out.append(chr(arg))
            elif kind == "not_literal":
                out.append("a" if chr(arg) != "a" else "b")
            elif kind == "any":
                out.append("x")
            elif kind == "in":
                out.append(_class_char(arg, pick))
            elif kind in ("max_repeat", "min_repeat", "possessive_repeat"):
                low, high, sub = arg
                high = low + 2 if high == parser.MAXREPEAT else high
                times = low if high <= low else low + pick(min(high - low, 2) + 1)
                for _ in range(times):
                    emit(sub)
            elif kind in ("subpattern", "atomic_group"):
                emit(arg[-1])
            elif kind == "branch":
                alternatives = arg[1]
                emit(alternatives[pick(len(alternatives))])
            elif kind == "category":
                out.append(_CATEGORY_CHARS.get(str(arg).lower().removeprefix("category_"), "a"))
            # at (anchors), assert, assert_not, groupref: nothing to emit

    try:
        emit(parsed)
    except Exception:
        return None
    text = "".join(out)
    return text if _matches(pattern, text) else None


_CATEGORY_CHARS = {"digit": "7", "not_digit": "a", "space": " ", "not_space": "a", "word": "a",
                   "not_word": "-"}
_CATEGORY_RE = {"digit": r"\d", "not_digit": r"\D", "space": r"\s", "not_space": r"\S",
                "word": r"\w", "not_word": r"\W"}


def _class_char(items: Any, pick: Any) -> str:
    """A character of a regex class (``[a-z0-9_]``, ``[^,]``...)."""
    negate = any(str(op).lower() == "negate" for op, _ in items)

    def inside(c: str) -> bool:
        for op, arg in items:
            kind = str(op).lower()
            if kind == "literal" and c == chr(arg):
                return True
            if kind == "range" and arg[0] <= ord(c) <= arg[1]:
                return True
            if kind == "category":
                cat = _CATEGORY_RE.get(str(arg).lower().removeprefix("category_"))
                if cat and re.fullmatch(cat, c):
                    return True
        return False

    pool = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ .,:;/+@#"
    allowed = [c for c in pool if inside(c) != negate]
    return allowed[pick(len(allowed))] if allowed else "a"


def _bounds(schema: dict[str, Any]) -> tuple[float | None, float | None]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    return (lo if _is_num(lo) else None), (hi if _is_num(hi) else None)


def _exclusive(schema: dict[str, Any]) -> tuple[float | None, float | None]:
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if xlo is True:  # draft 4: the minimum itself is exclusive
        xlo = schema.get("minimum")
    if xhi is True:
        xhi = schema.get("maximum")
    return (xlo if _is_num(xlo) else None), (xhi if _is_num(xhi) else None)


def _number_check(lo: float | None, hi: float | None, xlo: float | None, xhi: float | None,
                  integer: bool) -> Any:
    def ok(v: float) -> bool:
        return ((lo is None or v >= lo) and (hi is None or v <= hi)
                and (xlo is None or v > xlo) and (xhi is None or v < xhi)
                and (not integer or float(v).is_integer()))
    return ok


def _multiple(mult: float, a: float, b: float, u: float, ok: Any, integer: bool) -> int | float:
    """A multiple of ``mult`` in [a, b] (seeded by ``u``) that ``ok`` accepts."""
    first, last = math.ceil(a / mult - 1e-9), math.floor(b / mult + 1e-9)
    ks = list(range(first, last + 1)) if last - first < 10_000 else [first, last]
    if ks:
        start = int(u * len(ks))
        ks = ks[start:] + ks[:start]
    # then outwards from [a, b]: an exclusive bound or an integer type can rule out every
    # multiple inside it (e.g. integer, exclusiveMinimum 500, multipleOf 0.5, range [500, 500])
    outwards = (k for step in range(1, 1_000) for k in (last + step, first - step))
    for k in itertools.chain(ks, outwards):
        v: int | float = k * mult
        if isinstance(mult, float):
            v = float(repr(round(v, 12)))
            if not (v / mult).is_integer():
                continue
        if integer:
            if not float(v).is_integer():
                continue
            v = int(v)
        if ok(v):
            return v
    return int(a) if integer else float(a)


def _preferred_range(name: str | None) -> tuple[float, float]:
    words = _words(name or "")
    for word in reversed(words):
        if word in NUMBER_RANGES:
            return NUMBER_RANGES[word]
        if _singular(word) in NUMBER_RANGES:
            return NUMBER_RANGES[_singular(word)]
    return (1, 100)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _nullable(schema: dict[str, Any]) -> bool:
    typ = schema.get("type")
    return isinstance(typ, list) and "null" in typ
