"""Checks answers recorded from the running server against the OpenAPI document.

Usage: check_answers.py OPENAPI.json ANSWERS.json

ANSWERS is a list of {"method", "path", "status", "content_type", "headers", "body",
"body_bytes"} (headers with lowercase names; body parsed when JSON, else null). Each answer must have a
documented status, a documented content type, every required header (each valid against
its schema), a JSON body valid against its schema, and no body where it documents none (JSON Schema 2020-12, as OpenAPI 3.1
uses). Prints every failure and exits 1 when there is one.
"""

import json
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:sseor:openapi"


def escape(token):
    return token.replace("~", "~0").replace("/", "~1")


def follow(document, node, pointer):
    """The node `node` at `pointer` stands for, and its pointer, following a `$ref`."""
    ref = node.get("$ref")
    if ref is None:
        return node, pointer
    target = document
    for token in ref.removeprefix("#/").split("/"):
        target = target[token.replace("~1", "/").replace("~0", "~")]
    return follow(document, target, ref.removeprefix("#"))


def header_value(text, schema):
    """A header's text as the JSON value its schema describes."""
    if schema.get("type") == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def check(document, registry, answer):
    where = f"{answer['method']} {answer['path']} {answer['status']}"
    item = document["paths"].get(answer["path"], {})
    operation = item.get(answer["method"].lower())
    if operation is None:
        return [f"{where}: the operation is not documented"]
    response = operation["responses"].get(str(answer["status"]))
    if response is None:
        return [f"{where}: the status is not documented"]
    pointer = f"/paths/{escape(answer['path'])}/{answer['method'].lower()}/responses/{answer['status']}"
    response, pointer = follow(document, response, pointer)
    failures = []
    for name, header in response.get("headers", {}).items():
        header, _ = follow(document, header, "")
        value = answer["headers"].get(name.lower())
        if value is None:
            if header.get("required"):
                failures.append(f"{where}: the required header {name} is missing")
            continue
        schema = header.get("schema", {})
        for error in validator(registry, schema).iter_errors(header_value(value, schema)):
            failures.append(f"{where}: header {name}: {error.message}")
    content = response.get("content", {})
    if not content:
        if answer["body_bytes"]:
            failures.append(f"{where}: a body of {answer['body_bytes']} bytes where none is documented")
        return failures
    media = (answer["content_type"] or "").split(";")[0].strip().lower()
    if media not in content:
        failures.append(f"{where}: content type {media!r} is not one of {sorted(content)}")
        return failures
    if media == "application/json":
        ref = {"$ref": f"{BASE}#{pointer}/content/{escape(media)}/schema"}
        for error in validator(registry, ref).iter_errors(answer["body"]):
            failures.append(f"{where}: body {json.dumps(answer['body'])}: {error.message}")
    return failures


def validator(registry, schema):
    return Draft202012Validator(schema, registry=registry)


def main():
    document = json.load(open(sys.argv[1]))
    answers = json.load(open(sys.argv[2]))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource(BASE, resource)
    failures = [failure for answer in answers for failure in check(document, registry, answer)]
    for failure in failures:
        print(failure)
    print(f"{len(answers)} answers checked, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
