"""Extractors: a transcript in, a summary and discrete memories (facts, preferences, decisions) out.

An extractor is pure from the worker's point of view: it sees only the transcript, and
its result is turned into commands by `workers.plan`. Two implementations:

- `KeywordExtractor` (the default, `MEMLEDGER_EXTRACTOR=keywords`): offline and
  deterministic. Sentences are classified by ordered phrase rules (decision before
  preference before fact); YAKE (the `yake` package, statistical, no model files and no
  downloads: lemmatisation, its only networked feature, stays off) ranks the session's
  key phrases, which become the summary's topics and the memories' tags. Same
  transcript, same result, in any process and under any PYTHONHASHSEED.
- `LLMExtractor` (`MEMLEDGER_EXTRACTOR=llm`): one chat-completions call to an
  OpenAI-compatible endpoint (`MEMLEDGER_LLM_URL`, `MEMLEDGER_LLM_MODEL`,
  `MEMLEDGER_LLM_API_KEY`), asked for JSON. Not deterministic in general; the worker's
  idempotency keys are per (session event, item index), so a redelivery can never add
  more memories than the largest run produced (see `workers.plan`).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger.errors import ConfigurationError, LedgerError
from ledger.events import Message
from ledger.settings import Settings

Kind = Literal["fact", "preference", "decision"]
MAX_ITEMS = 24
MAX_ITEM_CHARS = 500
MAX_SUMMARY_CHARS = 2000
IMPORTANCE: dict[Kind, float] = {"decision": 0.8, "preference": 0.7, "fact": 0.6}


class ExtractionError(LedgerError):
    """The extractor could not produce a result for a transcript (retried, then marked failed)."""


@dataclass(frozen=True, slots=True)
class ExtractedItem:
    kind: Kind
    content: str
    importance: float
    tags: tuple[str, ...] = ()
    message_index: int | None = None  # which transcript message it came from, when known


@dataclass(frozen=True, slots=True)
class Extraction:
    summary: str
    items: tuple[ExtractedItem, ...]
    topics: tuple[str, ...] = ()


class Extractor(Protocol):
    """Turns a transcript into an `Extraction`; `name` is recorded on the summary event."""

    name: str

    def extract(self, transcript: Sequence[Message]) -> Extraction: ...


# -- the default: phrase rules + YAKE ---------------------------------------------------

_RULES: tuple[tuple[Kind, frozenset[str], re.Pattern[str]], ...] = (
    ("decision", frozenset({"user", "assistant"}), re.compile(
        r"\b(we|i)\s+(have\s+|'ve\s+)?(decided|agreed|chose|chosen|settled on|committed to)\b"
        r"|\blet'?s\s+(go with|use|ship|move|switch|keep|stick with)\b"
        r"|\b(we|i)\s*('ll|\s+will)\s+(go with|use|switch to|move to|adopt|ship|launch)\b"
        r"|\bthe (plan|decision) is\b|\bdecision:", re.IGNORECASE)),
    ("preference", frozenset({"user"}), re.compile(
        r"\bi\s+(really\s+|much\s+|strongly\s+)?(prefer|like|love|enjoy|hate|dislike|avoid)\b"
        r"|\bi\s*('d|\s+would)\s+(rather|prefer|like)\b|\bmy\s+favou?rite\b"
        r"|\bi\s+(don't|do not|never)\s+(like|want|use|eat|drink)\b|\bplease\s+(always|never|don't|do not)\b",
        re.IGNORECASE)),
    ("fact", frozenset({"user"}), re.compile(
        r"\bmy\s+[a-z]+(\s+[a-z]+)?\s+(is|are|was|were)\b"
        r"|\bi\s+(am|'m|work|live|have|own|manage|lead|was born|moved|joined)\b"
        r"|\bwe\s+(are|have|run|use|employ|sell|serve)\b"
        r"|\b(is|are)\s+(located|based|due|scheduled|owned|managed)\b"
        r"|\b\d[\d,.]*\s*(%|k\b|m\b|users|people|customers|employees|servers|nodes|days|weeks|months|years)",
        re.IGNORECASE)),
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_TAG_CHARS = re.compile(r"[^a-z0-9_.:/-]+")


def sentences(text: str) -> list[str]:
    """Split on sentence ends followed by a capital (or digit/quote) and on line breaks."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def classify(role: str, sentence: str) -> Kind | None:
    for kind, roles, pattern in _RULES:
        if role in roles and pattern.search(sentence):
            return kind
    return None


def as_tag(phrase: str) -> str | None:
    """A key phrase as a valid tag (`^[a-z0-9][a-z0-9_.:/-]{0,63}$`), or None."""
    tag = _TAG_CHARS.sub("-", phrase.lower()).strip("-._:/")[:64].rstrip("-._:/")
    return tag or None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class KeywordExtractor:
    """The offline, deterministic default (see the module docstring)."""

    name = "keywords"

    def __init__(self, topics: int = 8, max_items: int = MAX_ITEMS):
        self.topics, self.max_items = topics, max_items
        self._local = threading.local()  # a YAKE extractor per thread: it keeps per-call state

    def _yake(self) -> Any:
        kw = getattr(self._local, "yake", None)
        if kw is None:
            import yake  # imported lazily: the producer side never needs it

            kw = self._local.yake = yake.KeywordExtractor(lan="en", n=2, top=self.topics, dedupLim=0.8)
        return kw

    def key_phrases(self, text: str) -> tuple[str, ...]:
        if not text.strip():
            return ()
        ranked = self._yake().extract_keywords(text)
        return tuple(dict.fromkeys(str(phrase) for phrase, _score in ranked))

    def extract(self, transcript: Sequence[Message]) -> Extraction:
        spoken = [(i, m) for i, m in enumerate(transcript) if m.role in ("user", "assistant")]
        topics = self.key_phrases("\n".join(m.content for _, m in spoken))
        items = self._items(spoken, topics)
        return Extraction(summarize(transcript, topics, items), items, topics)

    def _items(self, spoken: list[tuple[int, Message]], topics: tuple[str, ...]) -> tuple[ExtractedItem, ...]:
        seen: set[str] = set()
        items: list[ExtractedItem] = []
        for index, message in spoken:
            for sentence in sentences(message.content):
                kind = classify(message.role, sentence)
                key = " ".join(sentence.lower().split())
                if kind is None or key in seen:
                    continue
                seen.add(key)
                lowered = sentence.lower()
                tags = tuple(t for p in topics if p.lower() in lowered and (t := as_tag(p)))[:3]
                items.append(ExtractedItem(kind, _clip(sentence, MAX_ITEM_CHARS), IMPORTANCE[kind], tags, index))
                if len(items) == self.max_items:
                    return tuple(items)
        return tuple(items)


def summarize(transcript: Sequence[Message], topics: tuple[str, ...], items: Sequence[ExtractedItem]) -> str:
    """A short, deterministic summary: who spoke, the topics, what was asked, decided, preferred."""
    users = sum(m.role == "user" for m in transcript)
    others = len(transcript) - users
    parts = [f"Session of {len(transcript)} messages ({users} from the user, {others} from the assistant or tools)."]
    if topics:
        parts.append(f"Topics: {', '.join(topics[:5])}.")
    opening = [s for m in transcript if m.role == "user" for s in sentences(m.content)][:4]
    if opening:
        # The first sentence that says something (a greeting alone does not).
        parts.append(f"Opened with: {_clip(next((s for s in opening if len(s.split()) >= 4), opening[0]), 200)}")
    for kind, label in (("decision", "Decided"), ("preference", "Preferences"), ("fact", "Facts")):
        chosen = [_clip(i.content, 160) for i in items if i.kind == kind][:2]
        if chosen:
            parts.append(f"{label}: {' / '.join(chosen)}")
    return _clip(" ".join(parts), MAX_SUMMARY_CHARS)


# -- an LLM behind an OpenAI-compatible endpoint ----------------------------------------

_PROMPT = (
    "You extract long-term memories from a chat transcript between a user and an assistant. "
    "Answer with one JSON object: {\"summary\": string (at most 5 sentences), \"memories\": "
    "[{\"type\": \"fact\"|\"preference\"|\"decision\", \"content\": string (one self-contained "
    "sentence), \"importance\": number 0..1, \"tags\": [string]}]}. Only durable information; "
    f"at most {MAX_ITEMS} memories; no prose outside the JSON."
)


class _LLMMemory(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Kind
    content: str = Field(min_length=1)
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    tags: list[str] = Field(default_factory=list)


class _LLMAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    memories: list[_LLMMemory] = Field(default_factory=list)


class LLMExtractor:
    """Chat completions at `<url>/chat/completions`, temperature 0, JSON answer."""

    name = "llm"

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s

    def request_body(self, transcript: Sequence[Message]) -> dict[str, Any]:
        rendered = "\n".join(f"{m.role}: {m.content}" for m in transcript)
        return {"model": self.model, "temperature": 0, "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": _PROMPT}, {"role": "user", "content": rendered}]}

    def extract(self, transcript: Sequence[Message]) -> Extraction:
        return self.parse(self._post(self.request_body(transcript)))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as e:
            raise ExtractionError(f"LLM endpoint {self.url} answered HTTP {e.code}: {e.reason}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise ExtractionError(f"LLM endpoint {self.url} is unreachable: {e}") from e
        except json.JSONDecodeError as e:
            raise ExtractionError(f"LLM endpoint {self.url} answered with invalid JSON: {e}") from e

    @staticmethod
    def parse(answer: dict[str, Any]) -> Extraction:
        """The extraction in a chat-completions answer (pure; raises ExtractionError)."""
        try:
            content = answer["choices"][0]["message"]["content"]
            parsed = _LLMAnswer.model_validate_json(content)
        except (KeyError, IndexError, TypeError, ValidationError) as e:
            raise ExtractionError(f"the LLM's answer is not the expected JSON: {e}") from e
        items = tuple(
            ExtractedItem(m.type, _clip(m.content, MAX_ITEM_CHARS), m.importance,
                          tuple(t for raw in m.tags[:3] if (t := as_tag(raw))))
            for m in parsed.memories[:MAX_ITEMS])
        return Extraction(_clip(parsed.summary, MAX_SUMMARY_CHARS), items)


def make_extractor(settings: Settings) -> Extractor:
    """The extractor `settings` choose (`MEMLEDGER_EXTRACTOR`)."""
    if settings.extractor == "keywords":
        return KeywordExtractor()
    if not settings.llm_url or not settings.llm_model:
        raise ConfigurationError("MEMLEDGER_EXTRACTOR=llm needs MEMLEDGER_LLM_URL and MEMLEDGER_LLM_MODEL; "
                                 "set them, or use the default keyword extractor")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return LLMExtractor(settings.llm_url, settings.llm_model, key, settings.llm_timeout_s)


__all__ = ["Extraction", "ExtractionError", "ExtractedItem", "Extractor", "KeywordExtractor", "LLMExtractor",
           "make_extractor"]
