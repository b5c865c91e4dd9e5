"""The preference store: labels that survive crashes, with pair expansion, import and export.

>>> from rlhf_lab.store import PreferenceStore
>>> store = PreferenceStore(":memory:")
>>> label_id = store.add("Say hi.", ["Hello there!", "Go away."], "A", annotator="ana")
>>> [(p.chosen, p.target) for p in store.pairs()]
[('Hello there!', 1.0)]
"""

from rlhf_lab.store.io import PreferenceImportError
from rlhf_lab.store.preference_store import PreferenceStore, group_items
from rlhf_lab.store.records import (
    Item,
    Judgement,
    Label,
    PreferencePair,
    Vote,
    expand_pairs,
    label_item_id,
)

__all__ = [
    "Item",
    "Judgement",
    "Label",
    "PreferenceImportError",
    "PreferencePair",
    "PreferenceStore",
    "Vote",
    "expand_pairs",
    "group_items",
    "label_item_id",
]
