"""The nodules shown for one series, as a plain model with listeners (no Qt).

The panel subscribes and redraws; tests change the list and assert the panel (STYLE.md rule 5).
With a store, every change is written through: nodules are kept per series, and the reader's
decisions (accepted / edited / rejected, with who and when) go to the store's audit history.
AI nodules stay "pending" until decided; nodules the reader measured count as accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from viewer.core.results import ModelRef
from viewer.core.volume import Volume

PENDING = "pending"


@dataclass(frozen=True)
class NoduleItem:
    id: str
    record: dict                 # the DESIGN.md NODULE dict, as last edited
    source: str                  # "ai" or "measured"
    model_id: str = ""
    model_version: str = ""
    confidence: float | None = None
    decision: str | None = None  # None while pending
    decided_by: str = ""
    decided_at: str = ""
    mask: Volume | None = field(default=None, compare=False)

    @property
    def status(self) -> str:
        if self.decision is None:
            return PENDING if self.source == "ai" else "measured"
        return self.decision

    @property
    def centre(self) -> np.ndarray:
        return np.asarray(self.record["centre_lps_mm"], float)

    @property
    def label(self) -> str:
        """The short name (N1, M2: the same across visits for a tracked nodule), not the 40-digit
        tracking UID, which the panel shows as the ID's tooltip."""
        return str(self.record.get("id") or self.record.get("tracking_uid") or self.id[:8])

    def source_text(self) -> str:
        """Where the finding came from: the model with version and confidence, or the reader."""
        if self.source != "ai":
            return "measured"
        confidence = "" if self.confidence is None else f" ({self.confidence:.2f})"
        return f"AI: {self.model_id} {self.model_version}{confidence}"


Listener = Callable[[str, "str | None"], None]  # (event, nodule id or None for the whole list)


class NoduleList:
    """Ordered nodules of one series; events: "reset", "added", "changed", "removed", "selected"."""

    def __init__(self, store=None, series_key: str | None = None):
        self.store = store
        self.series_key = series_key
        self.items: list[NoduleItem] = []
        self.selected_id: str | None = None
        self._listeners: list[Listener] = []
        if store is not None and series_key:
            self.load(store, series_key)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: str, nodule_id: str | None = None) -> None:
        for listener in list(self._listeners):
            listener(event, nodule_id)

    def load(self, store, series_key: str | None) -> None:
        """Show the nodules kept for a series (none without a store or series)."""
        self.store, self.series_key = store, series_key
        self.items = []
        self.selected_id = None
        if store is not None and series_key:
            for row in store.nodules(series_key):
                decision = row["decision"] or {}
                self.items.append(NoduleItem(
                    row["id"], row["current"], row["source"], row["model_id"], row["model_version"], row["confidence"],
                    decision.get("decision"), decision.get("user", ""), decision.get("at", ""),
                    store.nodule_mask(row["id"]) if row["has_mask"] else None))
        self._emit("reset")

    def get(self, nodule_id: str) -> NoduleItem:
        for item in self.items:
            if item.id == nodule_id:
                return item
        raise KeyError(f"no nodule {nodule_id} in the list of series {self.series_key}")

    def add(self, record: dict, source: str, mask: Volume | None = None, model=None,
            confidence: float | None = None) -> NoduleItem:
        model_id, model_version = ModelRef.parts(model)
        if self.store is not None and self.series_key:
            nodule_id = self.store.save_nodule(self.series_key, record, source, mask=mask,
                                               model=(model_id, model_version) if model_id else None,
                                               confidence=confidence)
        else:
            nodule_id = uuid.uuid4().hex
        item = NoduleItem(nodule_id, dict(record), source, model_id, model_version, confidence, mask=mask)
        self.items.append(item)
        self._emit("added", nodule_id)
        return item

    def decide(self, nodule_id: str, decision: str, record: dict | None = None, mask: Volume | None = None,
               user: str | None = None) -> NoduleItem:
        """Accept, reject or (with the edited record and mask) edit a nodule; stored with who and when."""
        item = self.get(nodule_id)
        if self.store is not None and self.series_key:
            self.store.decide_nodule(nodule_id, decision, record=record, user=user, mask=mask)
            last = self.store.nodule_decisions(nodule_id)[-1]
            by, at = last["user"], last["at"]
        else:
            import getpass
            from datetime import datetime, timezone

            by, at = user or getpass.getuser(), datetime.now(timezone.utc).isoformat()
        changed = replace(item, decision=decision, decided_by=by, decided_at=at,
                          record=dict(record) if record is not None else item.record,
                          mask=mask if mask is not None else item.mask)
        self.items = [changed if x.id == nodule_id else x for x in self.items]
        self._emit("changed", nodule_id)
        return changed

    def remove(self, nodule_id: str) -> None:
        self.get(nodule_id)
        if self.store is not None:
            self.store.delete_nodule(nodule_id)
        self.items = [x for x in self.items if x.id != nodule_id]
        if self.selected_id == nodule_id:
            self.selected_id = None
        self._emit("removed", nodule_id)

    def select(self, nodule_id: str | None) -> None:
        if nodule_id is not None:
            self.get(nodule_id)
        self.selected_id = nodule_id
        self._emit("selected", nodule_id)

    @property
    def selected(self) -> NoduleItem | None:
        return None if self.selected_id is None else self.get(self.selected_id)
