"""Errors the backend reports to people: each carries a message fit to show as is."""


class OrbitexError(Exception):
    """Base class: the message is for the user, no traceback needed."""


class InputError(OrbitexError, ValueError):
    """The input (file, parameter, camera) is unusable; the message names what and why."""


class MissingWeightsError(OrbitexError):
    """A model's weights are not installed; the message names them and the install command."""


class Cancelled(OrbitexError):
    """Raised inside long work when the job was cancelled."""
