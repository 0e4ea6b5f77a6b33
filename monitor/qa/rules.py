"""A compliance script as typed, immutable data: stages, forbidden phrases, exceptions.

This module owns the vocabulary of a service script once it has been loaded and validated
(`monitor.qa.scripts` turns TOML into these objects; `monitor.qa.checker` runs them):

* `Stage` - something the agent (or customer, or either) must say: greeting, identity
  verification, hold notice, closing. A stage is one or more `Element`s that must all be
  heard in one turn of the party (a greeting = salutation + service phrase + offer of help);
  each element is a set of phrase variants, any of which will do. A stage has a `Window`, an
  order constraint (`after`: stages that must come first), a severity and a score deduction
  when it is missed.
* `ForbiddenRule` - phrases that must never be said (rude, shirking, improper promises),
  with a severity and a deduction, raised the moment they are heard.
* `Intent` (`monitor.qa.intents`) - a stage or forbidden rule by meaning: a description and
  example utterances, matched semantically besides the rule's phrases.
* `ExceptionRule` - phrases (usually the customer's) that suspend other rules, for a while or
  for the rest of the call: "I'm in a hurry" suspends the closing script.

Times are media time in milliseconds from the start of the call, like the transcript.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from monitor.qa.intents import Intent, IntentIndex
from monitor.qa.textmatch import CompiledPhrase, normalize


class Severity(enum.StrEnum):
    INFO = "info"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Speaker(enum.StrEnum):
    """Whose speech a rule listens to."""

    AGENT = "agent"
    CUSTOMER = "customer"
    ANY = "any"

    def hears(self, party: str) -> bool:
        return self is Speaker.ANY or self.value == party


class WindowKind(enum.StrEnum):
    ANYWHERE = "anywhere"
    FIRST = "first"  # must start within the first `seconds` after the anchor
    LAST = "last"  # must end within the last `seconds` of the call


class Anchor(enum.StrEnum):
    """What a `first` window counts from."""

    CALL_START = "call_start"
    AGENT_SPEECH = "agent_speech"  # the agent's first transcribed words
    CUSTOMER_SPEECH = "customer_speech"


@dataclass(frozen=True, slots=True)
class Window:
    kind: WindowKind = WindowKind.ANYWHERE
    seconds: float = 0.0
    anchor: Anchor = Anchor.CALL_START

    @property
    def ms(self) -> int:
        return int(round(self.seconds * 1000))

    def describe(self) -> str:
        """Short human-readable form, stored with misses: "first 10 s of agent speech"."""
        if self.kind is WindowKind.ANYWHERE:
            return "anywhere"
        if self.kind is WindowKind.LAST:
            return f"last {self.seconds:g} s of the call"
        of = {
            Anchor.CALL_START: "the call",
            Anchor.AGENT_SPEECH: "agent speech",
            Anchor.CUSTOMER_SPEECH: "customer speech",
        }[self.anchor]
        return f"first {self.seconds:g} s of {of}"


@dataclass(frozen=True, slots=True)
class Element:
    """One part of a stage; any of its phrase variants satisfies it."""

    name: str
    phrases: tuple[CompiledPhrase, ...]
    #: May be missing when the other elements match with margin to spare (the courtesy
    #: 您好 before a full service phrase and offer of help): its absence costs
    #: `MISSING_OPTIONAL_PENALTY` points of the stage's margin instead of failing it.
    optional: bool = False
    #: The agent's own name from the call metadata (`agentName`) also satisfies it: "uh name
    #: Emily" is an agent giving her name though the ASR lost "my ... is". Matched with the
    #: element's `tolerance` and `min_score`, like any phrase of the script.
    own_name: bool = False
    tolerance: float = 0.2
    min_score: float = 75.0
    #: This part by meaning (`monitor.qa.intents`), besides its phrases.
    intent: Intent | None = None

    def with_name(self, name: str | None) -> Element:
        """This element for a call whose agent is `name` (full name and first name)."""
        name = " ".join((name or "").split()[:MAX_NAME_WORDS])
        if not self.own_name or not normalize(name).text:
            return self  # metadata is switch input: a name of digits or symbols adds nothing
        wordings = [w for w in dict.fromkeys([name, name.split()[0]]) if normalize(w).text]
        extra = tuple(CompiledPhrase.build(w, self.tolerance, self.min_score) for w in wordings)
        return replace(self, phrases=self.phrases + extra)


#: Margin a stage gives up for a missing optional element. 5: Mandarin greetings whose 您好
#: the ASR clipped ("好，" / "您呢吧好") pass on a damaged service phrase and offer of help
#: (recall at 20 % CER 0.90 -> 0.92 over 1,000 calls), and no near miss counts; the near
#: misses lack a required element.
MISSING_OPTIONAL_PENALTY = 5.0
#: Call metadata fields that carry the agent's name (switch metadata, Twilio parameters).
AGENT_NAME_KEYS = ("agentName", "agent_name")


def agent_name_of(metadata: Mapping[str, Any]) -> str | None:
    """The agent's name a switch sent in the call metadata, if any (`AGENT_NAME_KEYS`)."""
    return next((v for k in AGENT_NAME_KEYS if isinstance(v := metadata.get(k), str)), None)


#: An agent name from the metadata is matched on its first few words only.
MAX_NAME_WORDS = 3


@dataclass(frozen=True, slots=True)
class Stage:
    id: str
    title: str
    party: Speaker
    elements: tuple[Element, ...]
    window: Window = Window()
    required: bool = True
    severity: Severity = Severity.MAJOR
    deduction: float = 0.0
    after: tuple[str, ...] = ()  # stage ids that must be said before this one
    order_severity: Severity = Severity.MINOR
    order_deduction: float = 0.0
    #: The step by meaning (examples, near misses), besides its phrases; None = phrases only.
    intent: Intent | None = None

    def for_agent(self, name: str | None) -> Stage:
        """This stage with the agent's own name added where an element accepts it."""
        elements = tuple(e.with_name(name) for e in self.elements)
        return self if elements == self.elements else replace(self, elements=elements)


@dataclass(frozen=True, slots=True)
class ForbiddenRule:
    id: str
    title: str
    party: Speaker
    phrases: tuple[CompiledPhrase, ...]
    severity: Severity = Severity.MAJOR
    deduction: float = 0.0  # taken once per call, however often the rule is broken
    intent: Intent | None = None  # the behaviour by meaning, besides its phrases


@dataclass(frozen=True, slots=True)
class ExceptionRule:
    id: str
    title: str
    party: Speaker
    phrases: tuple[CompiledPhrase, ...]
    suspends: tuple[str, ...]  # stage or forbidden-rule ids
    for_s: float = 0.0  # 0 = for the rest of the call


@dataclass(frozen=True, slots=True)
class Selector:
    """Call metadata that picks a script: any listed queue or callee (DNIS) matches."""

    queues: frozenset[str] = frozenset()
    callees: frozenset[str] = frozenset()
    default: bool = False  # the script for its language when nothing else matches
    fallback: bool = False  # the script when nothing matches and the language is unknown


@dataclass(frozen=True, slots=True)
class ComplianceScript:
    name: str
    title: str
    language: str
    source: str  # the file it came from, for messages
    stages: tuple[Stage, ...]
    forbidden: tuple[ForbiddenRule, ...] = ()
    exceptions: tuple[ExceptionRule, ...] = ()
    selector: Selector = field(default_factory=Selector)
    pass_score: float = 80.0
    #: Another party's utterance at least this long ends a turn (shorter ones are
    #: backchannels: "mm", "好的").
    turn_break_ms: int = 1200
    #: A pause this long in one party's speech also ends its turn.
    turn_gap_ms: int = 8000
    #: The intents of its stages and forbidden rules with their example vectors (None when
    #: the script has none): what `monitor.qa.intents.IntentTracker` matches against.
    intents: IntentIndex | None = field(default=None, compare=False)

    def stage(self, stage_id: str) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise KeyError(stage_id)
