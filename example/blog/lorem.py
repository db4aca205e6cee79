"""Plausible, deterministic filler text for the seed data.

Everything is drawn from a ``random.Random`` the caller passes in, so the same seed always
gives the same blog.
"""

import random

AUTHORS = [
    ("Ada Whitlock", "Writes about databases by day and bread by night."),
    ("Bruno Castellane", "Runs trails, reads query plans, and tries to keep both short."),
    ("Chiara Okafor", "Typography, film cameras and the occasional rant about caches."),
    ("Dmitri Vasquez", "Fixes bicycles and web servers, in that order of enjoyment."),
    ("Elin Marsh", "Gardener, birdwatcher, reluctant on-call engineer."),
    ("Farid Lindqvist", ""),
]

TAGS = [
    "Django",
    "Databases",
    "Caching",
    "Performance",
    "Baking",
    "Running",
    "Photography",
    "Gardening",
    "Typography",
    "Cycling",
    "Birds",
    "Notes",
]

TOPICS = [
    "cache invalidation",
    "sourdough",
    "database indexes",
    "slow mornings",
    "trail running",
    "template fragments",
    "urban gardening",
    "query plans",
    "film photography",
    "typography",
    "green tea",
    "model signals",
    "bicycle repair",
    "birdwatching",
    "long walks",
    "connection pooling",
    "rye bread",
    "night trains",
    "paper notebooks",
    "composting",
    "transaction isolation",
    "hill repeats",
    "darkroom printing",
    "serif fonts",
]

TITLE_PATTERNS = [
    "Notes on {a}",
    "Why {a} matters more than you think",
    "A week of {a}",
    "{A}, revisited",
    "What {a} taught me about {b}",
    "The quiet art of {a}",
    "Small lessons in {a}",
    "On {a} and {b}",
    "Getting started with {a}",
    "{A} without the fuss",
]

# Latin-ish filler; reads like text without saying anything.
_WORD_TEXT = """
lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt
ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco
laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate
velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident
sunt culpa qui officia deserunt mollit anim id est laborum curabitur pretium tincidunt
lacus nunc vitae mauris fermentum porta viverra tellus integer feugiat scelerisque
varius morbi pellentesque habitant tristique senectus netus malesuada fames turpis
egestas
"""
WORDS = _WORD_TEXT.split()

COMMENTER_NAMES = [
    "Sam",
    "Priya",
    "Jonas",
    "Mei",
    "Tomasz",
    "Aisha",
    "Lars",
    "Noor",
    "Kwame",
    "Ines",
    "Hugo",
    "Yuki",
    "Rosa",
    "Emeka",
    "Vera",
    "Otto",
]

COMMENT_OPENERS = [
    "Great post!",
    "Thanks for writing this up.",
    "I tried this last week.",
    "Not sure I agree.",
    "This matches my experience.",
    "Lovely photos.",
    "Bookmarked.",
    "One small correction:",
    "Could you say more about the second part?",
]


def sentence(rng: random.Random, low: int = 6, high: int = 16) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


def body(rng: random.Random) -> str:
    return "\n\n".join(paragraph(rng) for _ in range(rng.randint(3, 6)))


def title(rng: random.Random) -> str:
    first, second = rng.sample(TOPICS, 2)
    text = rng.choice(TITLE_PATTERNS).format(a=first, b=second, A=first.capitalize())
    return text[0].upper() + text[1:]


def comment_body(rng: random.Random) -> str:
    rest = " ".join(sentence(rng, 4, 12) for _ in range(rng.randint(0, 2)))
    return f"{rng.choice(COMMENT_OPENERS)} {rest}".strip()
