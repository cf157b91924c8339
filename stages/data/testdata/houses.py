#!/usr/bin/env python3
"""Writes houses.csv: 60 rows of a small, made-up housing data set with a
text column (region), a column of numbers and text (zone) and empty cells
in numeric columns (sqft, age) and in region, for the tests of categorical
columns and imputation. Deterministic: a fixed linear congruential
generator, no library randomness. Every number is spelled as Go's
strconv.FormatFloat(v, 'g', -1, 64) writes it, so the file's lines are
exactly what data.WriteCSV writes for its rows.

    python3 houses.py > houses.csv
"""

state = 20240601


def rnd():
    """A float in [0, 1) from a 32-bit LCG (Numerical Recipes constants)."""
    global state
    state = (1664525 * state + 1013904223) % 2**32
    return state / 2**32


def num(v):
    if v == int(v):
        return str(int(v))
    return repr(v)


REGIONS = ["north", "south", "east", "west", "north, hills"]
EFFECT = {"north": 40.0, "south": -25.0, "east": 10.0, "west": 0.0, "north, hills": 70.0, "": 5.0}
ZONES = ["1", "2", "3", "B"]
ZONE_EFFECT = {"1": 0.0, "2": 15.0, "3": 30.0, "B": -20.0}

print("sqft,region,age,rooms,zone,price")
for i in range(60):
    sqft = float(500 + int(rnd() * 2500))
    region = REGIONS[i % 5] if i % 17 != 3 else ""
    age = round(rnd() * 60, 1)
    rooms = float(1 + int(rnd() * 6))
    zone = ZONES[int(rnd() * 4)]
    price = 100 + 0.12 * sqft + EFFECT[region] - 1.5 * age + 12 * rooms + ZONE_EFFECT[zone] + (rnd() - 0.5) * 30
    price = round(price, 2)
    cells = [num(sqft), region, num(age), num(rooms), zone, num(price)]
    if i % 11 == 4:
        cells[0] = ""  # sqft missing
    if i % 13 == 7:
        cells[2] = ""  # age missing
    if "," in cells[1]:
        cells[1] = '"' + cells[1] + '"'
    print(",".join(cells))
