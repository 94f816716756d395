"""One exception hierarchy for everything thrifty raises on purpose.

Every message names the thing that was wrong and the fix, so that a user never has to read a
traceback from deep inside torch or pluggy to learn what to do.
"""


class ThriftyError(Exception):
    """Base class of every error thrifty raises deliberately."""


class PluginError(ThriftyError):
    """A plugin failed to load, registered something invalid, or implemented an unknown hook."""


class PluginConflictError(PluginError):
    """Two plugins registered the same name in one hook family."""


class ConfigError(ThriftyError):
    """A pipeline, option or command-line value is unknown, missing or of the wrong type."""


class UnknownNameError(ConfigError):
    """A name was asked for that no plugin registered; the message lists what is registered."""


class ModelNotFoundError(ThriftyError):
    """A model directory, zoo name or weights file does not exist."""


class OfflineError(ThriftyError):
    """Something had to be downloaded and the package index could not be reached."""


class IncompatibleModelsError(ThriftyError):
    """A draft and a verifier cannot work together (vocabulary, tokenizer or device differ)."""


class DatasetFormatError(ThriftyError):
    """A data file is malformed; the message names the file, the line number and its content."""


class KnobError(ThriftyError):
    """A hardware or software knob could not be read, set or restored."""


class KnobDomainError(KnobError):
    """A value lies outside a knob's domain; the message lists the allowed values."""


class PermissionDeniedError(KnobError):
    """Setting a knob or reading a meter needs privileges the process does not have."""


class NotSupportedError(ThriftyError):
    """The hardware or driver does not support an operation (a knob, a counter)."""


class MeterError(ThriftyError):
    """An energy meter could not produce a reading."""


class ModelFormatError(ThriftyError):
    """A model file (ONNX graph, safetensors checkpoint) is not what its loader expects."""


class PluginWarning(UserWarning):
    """A plugin was refused or broke outside strict mode: reported, and the program goes on."""
