"""A job submission's JSON spec: parsed, checked all the way down, and normalised before anything
is stored, so a stored job always reads back and always serialises (to the API and to SQLite).

Refused with an InputError naming the place: text that UTF-8 cannot encode (lone surrogates such
as "\\ud800", which JSON's \\u escapes allow), NaN and Infinity (JSON has neither, Python's parser
accepts both), integers outside 64 bits, nesting deeper than MAX_DEPTH, and anything Python's JSON
parser itself gives up on (e.g. integers of more than 4300 digits, nesting past its recursion limit).
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

from ..errors import InputError

MAX_DEPTH = 32
_INT_LIMIT = 1 << 63
EXAMPLE = 'e.g. {"type": "render-orbit", "params": {"frames": 8}}'


def parse_spec(raw: bytes | None) -> tuple[str, dict[str, Any]]:
    """(job type, params) of a spec form field; InputError for anything unusable."""
    if raw is None:
        raise InputError(f"missing form field 'spec' (JSON {EXAMPLE})")
    try:
        spec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"form field 'spec' is not UTF-8 text ({exc.reason} at byte {exc.start}); {EXAMPLE}") from None
    except RecursionError:
        raise InputError(f"form field 'spec' is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing thousands of digits
        raise InputError(f"form field 'spec' is not valid JSON ({exc}); {EXAMPLE}") from None
    if not isinstance(spec, dict):
        raise InputError(f"form field 'spec' must be a JSON object, {EXAMPLE}")
    unknown = sorted(set(spec) - {"type", "params"})
    if unknown:
        raise InputError(f"unknown key(s) in spec: {', '.join(map(_shown, unknown))}; a spec has 'type' and 'params'")
    job_type = spec.get("type")
    if not isinstance(job_type, str) or not job_type:
        raise InputError(f"spec needs a 'type' (the job type), {EXAMPLE}")
    check_value(job_type, "spec 'type'")
    params = spec.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputError("spec 'params' must be a JSON object")
    for key, value in params.items():
        check_value(key, "a parameter name")
        check_value(value, f"parameter {key!r}")
    return job_type, params


def check_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what JSON or UTF-8 cannot carry; `where` names the place in the message."""
    if depth > MAX_DEPTH:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"{where}: text with a character UTF-8 cannot encode ({exc.reason},"
                             f" {value[exc.start]!r} at position {exc.start})") from None
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise InputError(f"{where}: integer out of range (a 64-bit integer, |n| < 2^63)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: {value} is not a finite number (JSON has no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_value(key, f"{where}: a key", depth + 1)
            check_value(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_value(item, f"{where}[{index}]", depth + 1)
    else:
        raise InputError(f"{where}: {type(value).__name__} is not a JSON value")


def normalised(params: dict[str, Any], parsed: Any) -> dict[str, Any]:
    """The given params as the pipeline's Params read them (ints given for floats become floats,
    tuples lists): what is stored, so the worker reads back exactly what was checked."""
    return {key: to_json(getattr(parsed, key)) for key in params}


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _shown(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")[:64]
