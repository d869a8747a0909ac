#!/usr/bin/env python3
"""Validates audit events with a real JSON Schema validator (python-jsonschema).

    validate.py native SCHEMA FILE...   native events (one JSON per line) against SCHEMA
                                        (docs/audit-event.schema.json)
    validate.py ocsf FILE...            OCSF events against the OCSF schema of the version each
                                        declares in metadata.version, class by class_uid
                                        (the schemas of schema.ocsf.io, as packaged by
                                        ocsf-json-schema on PyPI)

Prints every violation as FILE:LINE: where: what, and exits 1 if there is any.
"""
import json
import sys

from jsonschema.validators import validator_for


def events(paths):
    for path in paths:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if line.strip():
                    yield f"{path}:{number}", json.loads(line)


def where(error):
    return "/" + "/".join(str(part) for part in error.absolute_path)


def native(schema_path, paths):
    with open(schema_path, encoding="utf-8") as file:
        schema = json.load(file)
    validator = validator_for(schema)(schema)
    return check(events(paths), lambda event: validator)


def ocsf(paths):
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    schemas = {}
    validators = {}

    def validator(event):
        version = event.get("metadata", {}).get("version")
        key = (version, event.get("class_uid"))
        if key not in validators:
            if version not in schemas:
                schemas[version] = OcsfJsonSchemaEmbedded(get_ocsf_schema(version))
            name = schemas[version].lookup_class_name_from_uid(event["class_uid"])
            schema = schemas[version].get_class_schema(name)
            validators[key] = validator_for(schema)(schema)
        return validators[key]

    return check(events(paths), validator)


def check(lines, validator_of):
    problems = 0
    count = 0
    for at, event in lines:
        count += 1
        for error in sorted(validator_of(event).iter_errors(event), key=str):
            problems += 1
            print(f"{at}: {where(error)}: {error.message}")
    if problems:
        print(f"{problems} problem(s) in {count} events")
        return 1
    print(f"ok: {count} events valid")
    return 0 if count else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "native":
        sys.exit(native(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) >= 3 and sys.argv[1] == "ocsf":
        sys.exit(ocsf(sys.argv[2:]))
    sys.exit(__doc__)
