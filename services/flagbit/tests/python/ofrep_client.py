"""A real OpenFeature client against a running FlagBit: PyPI's openfeature-sdk 0.10.0 with
openfeature-provider-ofrep 0.3.0, code no one here wrote.

    python3 -m venv venv && venv/bin/pip install openfeature-sdk==0.10.0 \
        openfeature-provider-ofrep==0.3.0
    FLAGBIT_URL=http://127.0.0.1:8083 FLAGBIT_ADMIN_KEY=... venv/bin/python ofrep_client.py

It creates an environment (named by FLAGBIT_ENV, default "pyclient-<time>"), imports the
flags below, makes an SDK key, waits for the flags to be served, and checks one thing per
line. Prints "N passed, N failed" last and exits non-zero on any failure.

Known shortcoming: `make test` does not run this yet. Wiring it in takes a Makefile step
that builds the venv (PyPI must be reachable), starts FlagBit (the stack on :8083 or a
test web tier) with its admin key, runs this, and removes the environment it made.
"""

import json
import os
import sys
import time
import urllib.request

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.contrib.provider.ofrep import OFREPProvider

URL = os.environ.get("FLAGBIT_URL", "http://127.0.0.1:8083").rstrip("/")
ADMIN = os.environ["FLAGBIT_ADMIN_KEY"]
ENV = os.environ.get("FLAGBIT_ENV", f"pyclient-{int(time.time())}")

FLAGS = {
    "flags": {
        "bool-flag": {"state": "ENABLED", "variants": {"on": True, "off": False},
                      "defaultVariant": "on"},
        "string-flag": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"},
                        "defaultVariant": "hi"},
        "int-flag": {"state": "ENABLED", "variants": {"ten": 10, "one": 1},
                     "defaultVariant": "ten"},
        "float-flag": {"state": "ENABLED", "variants": {"half": 0.5, "whole": 1.0},
                       "defaultVariant": "whole"},
        "object-flag": {"state": "ENABLED",
                        "variants": {"a": {"showImages": True, "n": 100}, "b": {}},
                        "defaultVariant": "a"},
        "targeted": {"state": "ENABLED", "variants": {"staff": "staff", "public": "public"},
                     "defaultVariant": "public",
                     "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]},
                                          "staff", None]}},
        "split": {"state": "ENABLED", "variants": {"lower": "lower", "upper": "upper"},
                  "defaultVariant": "lower",
                  "targeting": {"fractional": [{"var": "targetingKey"},
                                               ["lower", 50], ["upper", 50]]}},
        "disabled": {"state": "DISABLED", "variants": {"on": True}, "defaultVariant": "on"},
    }
}


def call(method, path, body=None):
    req = urllib.request.Request(
        URL + "/api/v1" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": ADMIN, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def main():
    call("POST", "/environments", {"name": ENV})
    call("POST", f"/environments/{ENV}/import", FLAGS)
    key = call("POST", f"/environments/{ENV}/sdk-keys", {"name": "python"})["key"]

    api.set_provider(OFREPProvider(URL, headers_factory=lambda: {"X-API-Key": key}))
    client = api.get_client()

    # The key and flags reach the web tier through its change notification.
    deadline = time.time() + 5
    while client.get_boolean_details("bool-flag", False).reason != Reason.STATIC:
        if time.time() > deadline:
            sys.exit("flags not served within 5 s")
        time.sleep(0.05)

    results = []

    def check(name, got, want):
        ok = got == want
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r}" + ("" if ok else f" (want {want!r})"))

    d = client.get_boolean_details("bool-flag", False)
    check("boolean", (d.value, d.variant, d.reason), (True, "on", Reason.STATIC))
    d = client.get_string_details("string-flag", "x")
    check("string", (d.value, d.variant), ("hi", "hi"))
    d = client.get_integer_details("int-flag", 0)
    check("integer", (d.value, type(d.value).__name__), (10, "int"))
    d = client.get_float_details("float-flag", 0.0)
    check("float", (d.value, type(d.value).__name__), (1.0, "float"))
    d = client.get_object_details("object-flag", {})
    check("object", d.value, {"showImages": True, "n": 100})

    ctx = EvaluationContext("u1", {"email": "ann@example.com"})
    d = client.get_string_details("targeted", "x", ctx)
    check("targeting match", (d.value, d.reason), ("staff", Reason.TARGETING_MATCH))
    d = client.get_string_details("targeted", "x", EvaluationContext("u2", {"email": "b@x.io"}))
    check("targeting miss", (d.value, d.reason), ("public", Reason.DEFAULT))

    for tk, want in [("ejOoVL", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"),
                     ("ceQdGm", "upper")]:
        d = client.get_string_details("split", "x", EvaluationContext(tk))
        check(f"fractional {tk}", (d.value, d.reason), (want, Reason.TARGETING_MATCH))

    d = client.get_boolean_details("disabled", False)
    check("disabled", (d.value, d.reason), (False, Reason.DISABLED))
    d = client.get_boolean_details("missing-flag", True)
    check("missing", (d.value, d.error_code), (True, ErrorCode.FLAG_NOT_FOUND))
    d = client.get_integer_details("string-flag", 7)
    check("wrong type", (d.value, d.error_code), (7, ErrorCode.TYPE_MISMATCH))

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
