# ruff: noqa: E501  (one question template a line reads better than wrapped strings)
"""Build tidewatch.sqlite and pairs.jsonl: the bundled text-to-SQL demo (deterministic).

The Halvorsen Tidewatch Cooperative's records (fictional): stations, members, gauges,
readings, dues and boats, with question/SQL pairs made from templates over its values.
Run: python corpora/tidewatch-sql/build.py (rewrites both files; the output is identical
on every run).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = """
CREATE TABLE stations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, district TEXT NOT NULL,
                       founded_year INTEGER NOT NULL, depth_m REAL NOT NULL);
CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
                      joined_year INTEGER NOT NULL, district TEXT NOT NULL);
CREATE TABLE gauges (id INTEGER PRIMARY KEY, station_id INTEGER NOT NULL REFERENCES stations(id),
                     model TEXT NOT NULL, installed_year INTEGER NOT NULL,
                     warden_id INTEGER NOT NULL REFERENCES members(id));
CREATE TABLE readings (id INTEGER PRIMARY KEY, gauge_id INTEGER NOT NULL REFERENCES gauges(id),
                       day TEXT NOT NULL, level_cm INTEGER NOT NULL);
CREATE TABLE dues (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES members(id),
                   year INTEGER NOT NULL, amount INTEGER NOT NULL, paid INTEGER NOT NULL);
CREATE TABLE boats (id INTEGER PRIMARY KEY, name TEXT NOT NULL, length_m REAL NOT NULL,
                    built_year INTEGER NOT NULL, keeper_id INTEGER NOT NULL REFERENCES members(id));
"""
DISTRICTS = ["Skerrow", "Marl Point", "Vennhollow", "Ostergate"]
STATIONS = ["Kelp Rock", "Grey Pier", "Harrow Sound", "Lantern Quay", "Wick Bay", "Sable Reach",
            "Corran Head", "Tollet Inlet", "Fenwise Bar", "Brack Haven", "Moor Steps", "Saltmere"]  # fmt: skip
FIRST = ["Ilse", "Jonas", "Maren", "Tobias", "Sigrid", "Anselm", "Greta", "Osric", "Liv", "Hale"]
LAST = ["Marrow", "Merriweather", "Dunlin", "Voss", "Calder", "Penhallow", "Ruske", "Thorne"]
ROLES = ["warden", "surveyor", "treasurer", "skipper", "archivist", "volunteer"]
MODELS = ["Aster-3", "Brine-7", "Cormorant", "Dunlin-2"]
BOATS = ["Pike", "Merrow", "Little Auk", "Tern", "Gannet", "Shearwater", "Kittiwake", "Fulmar"]
YEARS = [2023, 2024, 2025]


def build_database(path: Path) -> dict[str, list]:
    rng = random.Random(7)
    stations = [(i + 1, name, DISTRICTS[i % 4], 1961 + 4 * i + rng.randint(0, 3), round(rng.uniform(2, 30), 1))
                for i, name in enumerate(STATIONS)]  # fmt: skip
    names = [f"{f} {last}" for last in LAST for f in FIRST][:40]
    rng.shuffle(names)
    members = [(i + 1, n, ROLES[i % 6], rng.randint(2001, 2024), DISTRICTS[rng.randrange(4)])
               for i, n in enumerate(names)]  # fmt: skip
    gauges = [(i + 1, i % 12 + 1, MODELS[rng.randrange(4)], rng.randint(1995, 2022), rng.randint(1, 40))
              for i in range(20)]  # fmt: skip
    readings, rid = [], 1
    for g in range(1, 21):
        for d in range(1, 31):
            readings.append((rid, g, f"2025-03-{d:02d}", rng.randint(40, 420)))
            rid += 1
    dues = [(m * 3 + k - 2, m, year, 40 if year < 2025 else 45, int(rng.random() > 0.2))
            for m in range(1, 41) for k, year in enumerate(YEARS)]  # fmt: skip
    keepers = [rng.randint(1, 40) for _ in range(6)]
    keepers += keepers[:2]  # two members keep two boats each
    boats = [(i + 1, n, round(rng.uniform(4, 14), 1), rng.randint(1978, 2021), keepers[i])
             for i, n in enumerate(BOATS)]  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.executescript(SCHEMA)
    for table, rows in [("stations", stations), ("members", members), ("gauges", gauges),
                        ("readings", readings), ("dues", dues), ("boats", boats)]:  # fmt: skip
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    os.replace(tmp, path)
    return {"stations": stations, "members": members, "gauges": gauges, "boats": boats}


def pairs(db: dict[str, list]) -> list[tuple[str, str]]:
    st = [s[1] for s in db["stations"]]
    mem = [m[1] for m in db["members"]]
    out: list[tuple[str, str]] = []
    for y in (2005, 2010, 2014, 2018, 2021, 2023):
        out.append((f"How many members joined in {y}?", f"SELECT count(*) FROM members WHERE joined_year = {y}"))
        out.append((f"How many members joined after {y}?", f"SELECT count(*) FROM members WHERE joined_year > {y}"))
    for d in DISTRICTS:
        out.append((f"List the names of members living in the {d} district.",
                    f"SELECT name FROM members WHERE district = '{d}'"))  # fmt: skip
        out.append(
            (f"How many stations are in the {d} district?", f"SELECT count(*) FROM stations WHERE district = '{d}'")
        )
        out.append((f"What is the average depth of the stations in the {d} district?",
                    f"SELECT avg(depth_m) FROM stations WHERE district = '{d}'"))  # fmt: skip
    for g in (1, 3, 5, 8, 11, 14, 17, 20):
        out.append((f"What is the average level in cm recorded by gauge {g}?",
                    f"SELECT avg(level_cm) FROM readings WHERE gauge_id = {g}"))  # fmt: skip
        out.append((f"Who is the warden of gauge {g}?",
                    f"SELECT m.name FROM gauges AS g JOIN members AS m ON g.warden_id = m.id WHERE g.id = {g}"))  # fmt: skip
        out.append((f"At which station is gauge {g} installed?",
                    f"SELECT s.name FROM gauges AS g JOIN stations AS s ON g.station_id = s.id WHERE g.id = {g}"))  # fmt: skip
    for s in st:
        out.append((f"How many gauges are installed at {s}?",
                    f"SELECT count(*) FROM gauges AS g JOIN stations AS s ON g.station_id = s.id WHERE s.name = '{s}'"))  # fmt: skip
        out.append((f"What is the highest water level recorded at {s}?",
                    "SELECT max(r.level_cm) FROM readings AS r JOIN gauges AS g ON r.gauge_id = g.id "
                    f"JOIN stations AS s ON g.station_id = s.id WHERE s.name = '{s}'"))  # fmt: skip
        out.append((f"In which year was {s} founded?", f"SELECT founded_year FROM stations WHERE name = '{s}'"))
    for y in YEARS:
        out.append((f"What is the total amount of dues paid for {y}?",
                    f"SELECT sum(amount) FROM dues WHERE year = {y} AND paid = 1"))  # fmt: skip
        out.append((f"Which members have not paid their dues for {y}?",
                    f"SELECT m.name FROM members AS m JOIN dues AS d ON d.member_id = m.id WHERE d.year = {y} AND d.paid = 0"))  # fmt: skip
        out.append(
            (f"How many members paid their dues for {y}?", f"SELECT count(*) FROM dues WHERE year = {y} AND paid = 1")
        )
    for n in (5, 7, 9, 11, 13):
        out.append((f"How many boats are longer than {n} metres?", f"SELECT count(*) FROM boats WHERE length_m > {n}"))
    for b in BOATS:
        out.append((f"Who keeps the boat {b}?",
                    f"SELECT m.name FROM boats AS b JOIN members AS m ON b.keeper_id = m.id WHERE b.name = '{b}'"))  # fmt: skip
        out.append((f"How long is the boat {b} in metres?", f"SELECT length_m FROM boats WHERE name = '{b}'"))
    for m in mem[::2]:
        out.append((f"What role does {m} have?", f"SELECT role FROM members WHERE name = '{m}'"))
    for r in ROLES:
        out.append((f"How many members are {r}s?", f"SELECT count(*) FROM members WHERE role = '{r}'"))
        out.append((f"List the names of the {r}s, in alphabetical order.",
                    f"SELECT name FROM members WHERE role = '{r}' ORDER BY name"))  # fmt: skip
    for y in (1970, 1980, 1990, 2000):
        out.append((f"List the stations founded before {y}, oldest first.",
                    f"SELECT name FROM stations WHERE founded_year < {y} ORDER BY founded_year"))  # fmt: skip
    for model in MODELS:
        out.append(
            (f"How many gauges are of the {model} model?", f"SELECT count(*) FROM gauges WHERE model = '{model}'")
        )
    for d in (3, 9, 14, 21, 27):
        out.append((f"How many readings above 300 cm were taken on 2025-03-{d:02d}?",
                    f"SELECT count(*) FROM readings WHERE day = '2025-03-{d:02d}' AND level_cm > 300"))  # fmt: skip
    out += [
        ("Which station has the deepest water?", "SELECT name FROM stations ORDER BY depth_m DESC LIMIT 1"),
        ("For each district, how many stations are there?", "SELECT district, count(*) FROM stations GROUP BY district"),
        ("Which gauge model is installed most often?",
         "SELECT model FROM gauges GROUP BY model ORDER BY count(*) DESC LIMIT 1"),
        ("Which members keep more than one boat?",
         "SELECT m.name FROM members AS m JOIN boats AS b ON b.keeper_id = m.id GROUP BY m.id HAVING count(*) > 1"),
        ("What is the longest boat?", "SELECT name FROM boats ORDER BY length_m DESC LIMIT 1"),
        ("Who joined the cooperative first?", "SELECT name FROM members ORDER BY joined_year LIMIT 1"),
    ]  # fmt: skip
    return out


def main() -> None:
    db = build_database(HERE / "tidewatch.sqlite")
    rows = pairs(db)
    order = list(range(len(rows)))
    random.Random(11).shuffle(order)
    test = set(order[: len(rows) // 3])
    lines = [
        json.dumps({"id": f"tw-{i:03d}", "question": q, "query": s, "split": "test" if i in test else "train"})
        for i, (q, s) in enumerate(rows)
    ]
    (HERE / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(rows)} pairs ({len(test)} test) over {HERE / 'tidewatch.sqlite'}")


if __name__ == "__main__":
    main()
