"""Job types the service accepts: backend.pipelines.PIPELINES, plus extra ones named by an env var.

ORBITEX_EXTRA_PIPELINES="TYPE=dotted.module.path[,TYPE=dotted.module.path...]" adds job types
served by any importable module that follows the pipeline contract (backend/pipelines/__init__.py).
The tests use it to register a small fixture pipeline; the worker process inherits the variable
from the server, so both see the same registry.

Pipeline modules are imported in the HTTP process too (for INPUTS, OPTIONAL_INPUTS and Params),
so they must keep heavy imports (torch, models) inside run(); tests/backend/test_service_imports.py
checks that for every registered pipeline.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .. import pipelines
from ..errors import InputError

EXTRA_ENV = "ORBITEX_EXTRA_PIPELINES"


def job_types() -> dict[str, str]:
    """Job type -> absolute module name."""
    types = {name: f"{pipelines.__name__}.{module}" for name, module in pipelines.PIPELINES.items()}
    for entry in filter(None, (e.strip() for e in os.environ.get(EXTRA_ENV, "").split(","))):
        name, sep, module = entry.partition("=")
        if not sep or not name.strip() or not module.strip():
            raise ValueError(f"{EXTRA_ENV}: {entry!r} is not TYPE=module.path")
        types[name.strip()] = module.strip()
    return types


def load(job_type: str) -> ModuleType:
    """Import the module of a job type; InputError for an unknown type."""
    types = job_types()
    if job_type not in types:
        raise InputError(f"unknown job type {job_type!r}; known: {', '.join(sorted(types))}")
    return importlib.import_module(types[job_type])


@dataclass(frozen=True)
class JobKind:
    """What the HTTP side needs to check a submission, read from the pipeline module."""

    type: str
    inputs: dict[str, str]
    optional_inputs: dict[str, str]
    params_cls: type

    def parse_params(self, values: Any) -> Any:
        if values is not None and not isinstance(values, dict):
            raise InputError("spec 'params' must be a JSON object")
        return pipelines.parse_params(self.params_cls, values)


def kind(job_type: str) -> JobKind:
    module = load(job_type)
    return JobKind(job_type, dict(module.INPUTS), dict(getattr(module, "OPTIONAL_INPUTS", {})), module.Params)
