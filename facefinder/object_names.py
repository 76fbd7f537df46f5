"""Words for objects -> COCO class names: what ``--with`` accepts.

The detector knows the 80 COCO classes by their COCO names ("cell phone", "couch",
"potted plant"), which is not how people ask. So a word is taken as a class name, a
plural of one ("dogs", "puppies"), a common synonym ("puppy", "sofa", "phone", "bike"),
or "pet"/"pets" for cat or dog; anything else gets one line naming the nearest class
(difflib), so a typo costs one more try, not a search of the documentation.
"""

from __future__ import annotations

import difflib
import re

PETS = ("cat", "dog")

# Common words for a COCO class (singular; plurals are derived). Each maps to the class
# a photo of that thing is detected as.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "pet": PETS,
    "animal pet": PETS,
    "puppy": ("dog",), "doggy": ("dog",), "doggie": ("dog",), "hound": ("dog",),
    "pup": ("dog",),
    "kitten": ("cat",), "kitty": ("cat",), "kitteh": ("cat",),
    "people": ("person",), "human": ("person",), "man": ("person",),
    "woman": ("person",), "men": ("person",), "women": ("person",),
    "child": ("person",), "children": ("person",), "kid": ("person",),
    "baby": ("person",), "face": ("person",),
    "bike": ("bicycle",), "cycle": ("bicycle",),
    "motorbike": ("motorcycle",), "scooter": ("motorcycle",),
    "plane": ("airplane",), "aeroplane": ("airplane",), "aircraft": ("airplane",),
    "jet": ("airplane",),
    "automobile": ("car",), "taxi": ("car",),
    "lorry": ("truck",), "ship": ("boat",), "yacht": ("boat",), "canoe": ("boat",),
    "sofa": ("couch",), "settee": ("couch",),
    "table": ("dining table",), "plant": ("potted plant",), "houseplant": ("potted plant",),
    "phone": ("cell phone",), "mobile": ("cell phone",), "mobile phone": ("cell phone",),
    "smartphone": ("cell phone",), "cellphone": ("cell phone",),
    "television": ("tv",), "telly": ("tv",), "tv monitor": ("tv",),
    "fridge": ("refrigerator",), "ball": ("sports ball",), "football": ("sports ball",),
    "doughnut": ("donut",), "hotdog": ("hot dog",), "teddy": ("teddy bear",),
    "hairdryer": ("hair drier",), "hair dryer": ("hair drier",),
    "racket": ("tennis racket",), "racquet": ("tennis racket",),
    "glass": ("wine glass",), "mug": ("cup",), "purse": ("handbag",), "bag": ("handbag",),
    "rucksack": ("backpack",), "pony": ("horse",), "lamb": ("sheep",),
    "cattle": ("cow",), "calf": ("cow",), "computer": ("laptop",), "notebook": ("laptop",),
    "remote control": ("remote",),
}


class UnknownObject(ValueError):
    """A word that names no class the detector knows; ``str()`` is one line."""


def _normal(word: str) -> str:
    """``word`` as it is looked up: case folded, and spaces, underscores and hyphens as one
    space, so "Teddy-Bear", "teddy_bear" and "teddy  bear" all name COCO's "teddy bear"."""
    return re.sub(r"[\s_\-]+", " ", word.strip().casefold())


def _singulars(word: str) -> list[str]:
    """The word itself and its likely singulars ("puppies" -> "puppy", "buses" -> "bus")."""
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s"):
        forms.append(word[:-1])
    if word.endswith("ves"):
        forms.append(word[:-3] + "fe")  # knives -> knife
    return forms


def _vocabulary() -> dict[str, tuple[str, ...]]:
    """Every word ``--with`` accepts -> the COCO classes it means (the class names, then the
    synonyms); built on demand, so importing this module loads no detector code."""
    from facefinder.vision.objects import COCO_CLASSES

    words = {name: (name,) for name in COCO_CLASSES}
    words.update(SYNONYMS)
    return words


def resolve(word: str) -> tuple[str, ...]:
    """The COCO classes ``word`` means (one, or cat and dog for "pet"); UnknownObject
    with the nearest class name when it means none."""
    text = _normal(word)
    words = _vocabulary()
    for form in _singulars(text):
        if form in words:
            return words[form]
    close = difflib.get_close_matches(text, list(words), n=1, cutoff=0.6)
    from facefinder.vision.objects import COCO_CLASSES

    if close:
        meant = " or ".join(words[close[0]])
        raise UnknownObject(f"--with {word}: not an object the detector knows; "
                            f"did you mean {meant}?")
    raise UnknownObject(f"--with {word}: not an object the detector knows (it knows "
                        f"{len(COCO_CLASSES)} kinds, e.g. dog, cat, car, bicycle, cake, "
                        "teddy bear; \"pet\" means cat or dog)")


def explain(word: str, classes: tuple[str, ...]) -> str | None:
    """A line telling how ``word`` was understood, when it is not a class name itself."""
    if _normal(word) in classes and len(classes) == 1:
        return None
    return f"--with {word}: looking for {' or '.join(classes)}"


def is_pet(label: str) -> bool:
    """Cats and dogs are first-class: "every photo of a pet"."""
    return label in PETS
