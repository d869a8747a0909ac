"""Converts every Sigma rule of a folder with pySigma (Splunk, Elasticsearch and SQLite backends)
and runs the SQLite query over audit events loaded into SQLite. Elasticsearch gets Lucene queries,
or ES|QL for correlation rules (which Lucene cannot express).

    run_rules.py RULES_DIR EVENTS.jsonl

Each event becomes a row of the table `logs`, its nested fields flattened into columns named by
their dotted path (`decision.effect`), arrays kept as JSON text (so `|contains` finds an element).
Prints one JSON object: for each rule file, the request ids of the events it matched (for a
correlation rule, of the events in each window that fired), and the Splunk and Elasticsearch
queries it converts to. Exits non-zero when a rule does not convert.
"""

import json
import sqlite3
import sys
from pathlib import Path

from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.backends.splunk import SplunkBackend
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection


def flatten(value, prefix="", out=None):
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}{key}.", out)
    elif isinstance(value, list):
        out[prefix[:-1]] = json.dumps(value)
    else:
        out[prefix[:-1]] = value
    return out


def load(events_file):
    rows = [flatten(json.loads(line)) for line in Path(events_file).read_text().splitlines() if line.strip()]
    columns = sorted({column for row in rows for column in row})
    db = sqlite3.connect(":memory:")
    quoted = ", ".join(f'"{column}"' for column in columns)
    db.execute(f"CREATE TABLE logs ({quoted})")
    marks = ", ".join("?" for _ in columns)
    db.executemany(
        f"INSERT INTO logs ({quoted}) VALUES ({marks})",
        [[row.get(column) for column in columns] for row in rows],
    )
    return db, columns


def run(db, query):
    """Runs a query; a field no event has is a column the table lacks: it is added (all NULL)."""
    while True:
        try:
            return db.execute(query)
        except sqlite3.OperationalError as error:
            if "no such column" not in str(error):
                raise
            missing = str(error).split(":", 1)[1].strip()
            db.execute(f'ALTER TABLE logs ADD COLUMN "{missing}"')


def main():
    rules_dir, events_file = sys.argv[1], sys.argv[2]
    db, _ = load(events_file)
    result = {}
    for rule in sorted(Path(rules_dir).glob("*.yml")):
        collection = SigmaCollection.from_yaml(rule.read_text())
        correlation = any(r.__class__.__name__ == "SigmaCorrelationRule" for r in collection.rules)
        queries = sqliteBackend(timestamp_field="time").convert(collection)
        matched = []
        for query in queries:
            cursor = run(db, query)
            names = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                fields = dict(zip(names, row))
                if "request_id" in fields:
                    matched.append(fields["request_id"])
                else:
                    # A correlation's alert names its events as `…:<rowid>`.
                    for event in json.loads(fields["event_ids"]):
                        rowid = int(str(event).rsplit(":", 1)[1])
                        matched += [r[0] for r in db.execute("SELECT request_id FROM logs WHERE rowid = ?", (rowid,))]
        elastic = ESQLBackend() if correlation else LuceneBackend()
        result[rule.name] = {
            "matched": sorted(set(matched)),
            "splunk": SplunkBackend().convert(collection),
            "elasticsearch": elastic.convert(collection),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
