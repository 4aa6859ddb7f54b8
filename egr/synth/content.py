"""Vocabulary and value makers of the synthetic documents (names, codes, money, dates, prose).

Answer values are built from digits, capital letters and ``. - / $ ,`` only."""

from __future__ import annotations

import datetime as dt
import random

NAME_A = (
    "Northwind", "Bluefield", "Harborline", "Cedar Ridge", "Summit", "Ironwood", "Silverlake",
    "Redstone", "Brightwater", "Oakmont", "Pinecrest", "Granite Bay", "Westbrook", "Lakeshore",
    "Meridian", "Stonegate", "Foxhollow", "Riverside",
)  # fmt: skip
NAME_B = (
    "Logistics", "Supply Co.", "Analytics", "Engineering", "Medical Group", "Consulting",
    "Manufacturing", "Foods", "Energy", "Software", "Freight", "Laboratories", "Holdings",
)  # fmt: skip
FIRST = (
    "Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "James", "Keiko",
    "Liam", "Maria", "Nikhil", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tara",
)  # fmt: skip
LAST = (
    "Alvarez", "Brennan", "Chen", "Dubois", "Eriksen", "Fischer", "Gallagher", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
)  # fmt: skip
STREETS = (
    "Main Street", "Oak Avenue", "Harbor Road", "Industrial Parkway", "Market Street", "Elm Drive",
    "Station Road", "Park Lane", "Commerce Way", "Mill Road",
)  # fmt: skip
CITIES = (
    "Springfield", "Riverton", "Fairview", "Georgetown", "Ashford", "Milton", "Clearwater",
    "Kingsbridge", "Lakewood", "Brookfield",
)  # fmt: skip
ITEMS = (
    "Consulting services", "Cloud hosting (monthly)", "Software license renewal",
    "On-site support visit", "Training workshop", "Hardware maintenance", "Data migration",
    "Network security audit", "Replacement parts", "Freight and handling", "Project management",
    "Quarterly service plan", "Installation labour", "Calibration service",
)  # fmt: skip
EXPENSES = (
    "Salaries and wages", "Rent and utilities", "Travel", "Marketing", "Software subscriptions",
    "Professional fees", "Insurance", "Equipment", "Training", "Office supplies", "Maintenance",
    "Telecommunications", "Freight", "Recruiting",
)  # fmt: skip
SUBJECTS = (
    "The facilities team", "Regional operations", "The review committee", "Procurement",
    "The finance office", "Site management", "The project board", "Quality assurance",
)  # fmt: skip
VERBS = (
    "reviewed", "completed", "identified", "scheduled", "reported on", "reduced", "consolidated",
    "assessed", "prioritised", "documented",
)  # fmt: skip
OBJECTS = (
    "maintenance backlogs", "vendor contracts", "energy consumption", "inspection findings",
    "staffing levels", "safety procedures", "capital requests", "service agreements",
    "open work orders", "lease renewals",
)  # fmt: skip
QUALIFIERS = (
    "across all sites", "during the period", "ahead of schedule", "in line with the plan",
    "for the second year running", "with minor exceptions", "at the northern campus",
    "as agreed with the steering group",
)  # fmt: skip


def company(rng: random.Random) -> str:
    return f"{rng.choice(NAME_A)} {rng.choice(NAME_B)}"


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def address(rng: random.Random) -> tuple[str, str]:
    return (
        f"{rng.randint(2, 980)} {rng.choice(STREETS)}",
        f"{rng.choice(CITIES)} {rng.randint(10000, 99999)}",
    )


def code(rng: random.Random, prefix: str, *groups: int, letters: bool = False) -> str:
    """``PREFIX-1234-567``; with ``letters`` the last group mixes capitals and digits."""
    parts = [prefix] if prefix else []
    for i, n in enumerate(groups):
        pool = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789" if letters and i == len(groups) - 1 else None
        if pool:
            parts.append("".join(rng.choice(pool) for _ in range(n)))
        else:
            parts.append(str(rng.randint(10 ** (n - 1), 10**n - 1)))
    return "-".join(parts)


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def date(rng: random.Random, start_year: int = 2019, end_year: int = 2026) -> dt.date:
    first = dt.date(start_year, 1, 1).toordinal()
    return dt.date.fromordinal(rng.randint(first, dt.date(end_year, 12, 31).toordinal()))


DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y")


def sentence(rng: random.Random) -> str:
    if rng.random() < 0.25:
        pct = f"{rng.randint(1, 19)}.{rng.randint(0, 9)}"
        what = rng.choice(OBJECTS)
        return f"Spending on {what} changed by {pct} percent compared with the prior year."
    return (
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"{rng.choice(QUALIFIERS)}."
    )


def prose(rng: random.Random, n_sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(n_sentences))


def small_size(rng: random.Random) -> float:
    return rng.choice((6.5, 7.0, 7.5))


def value_size(rng: random.Random) -> float:
    return rng.choice((9.0, 9.5, 10.0, 10.5, 11.0))
